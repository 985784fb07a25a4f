"""The Python side of `npm run bench`: the same work as the Node side, on the same machine, libtorch
and weights, in the way a Python researcher does it (easyroutine registers forward hooks on the
original nn.Module).

    python3 bench/python_hooks.py MODEL FILE THREADS POSITIONS IDS

MODEL is `bundled` (reference_models.induction_model) or `gpt2-small-shaped` (reference_models.GPT);
the module's weights are loaded from FILE, the TorchScript file the Node side runs. POSITIONS is a JSON
list of the target positions, IDS one row of token ids. It prints one JSON line when ready, then
serves the Node side, which alternates its own runs with these so that drift hits both alike: each
line `CASE ITERATIONS` read from stdin runs CASE that many times and answers with the milliseconds
per call. Cases:
  bare_script   torch.jit.load(FILE), the very file Node runs
  bare_module   the nn.Module
  extraction    the nn.Module with forward hooks keeping every block's output (resid_out) and
                every head's pattern, cloned and sliced at the target positions
  identity      a module that does nothing, called alone
  identity_hook the same with a forward hook that does nothing (the difference is a hook's cost)
  module_hooks  the nn.Module with a forward hook that does nothing on every module (against
                bare_module, a hook's cost inside a forward, as the Node side measures its own)
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from reference_models import GPT, induction_model  # noqa: E402


class HookPoint(nn.Module):
    """An identity module to hang a forward hook on, as easyroutine's attention wrapper does."""

    def forward(self, x):
        return x


def with_pattern_hook_points(model):
    """Runs each attention's own forward with its softmax result passed through an identity module,
    so that a forward hook sees the pattern (easyroutine wraps the attention for the same purpose)."""
    for block in model.transformer.h:
        attn = block.attn
        attn.pattern_hook = HookPoint()
        original = attn.forward

        def forward(x, attn=attn, original=original):
            softmax = F.softmax
            F.softmax = lambda t, dim=None, **kw: attn.pattern_hook(softmax(t, dim=dim, **kw))
            try:
                return original(x)
            finally:
                F.softmax = softmax

        attn.forward = forward
    return model


def build(name, file):
    module = induction_model() if name == "bundled" else GPT(vocab=50257, d_model=768, n_heads=12, n_layers=12, ctx=1024)
    module.load_state_dict(torch.jit.load(file).state_dict())
    return with_pattern_hook_points(module.eval())


def main():
    name, file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    positions = json.loads(sys.argv[4])
    torch.set_num_threads(threads)
    model = build(name, file)
    script = torch.jit.load(file).eval()
    ids = torch.tensor([json.loads(sys.argv[5])])
    cache = {}

    def save(key):
        def hook(module, args, output):
            cache[key] = output.detach().clone()[:, positions]
        return hook

    def save_pattern(key):
        def hook(module, args, output):
            pattern = output.detach().clone()
            for h in range(pattern.size(1)):
                cache[f"{key}H{h}"] = pattern[:, h, positions][:, :, positions]
        return hook

    def extraction_hooks():
        handles = []
        for i, block in enumerate(model.transformer.h):
            handles.append(block.register_forward_hook(save(f"resid_out_{i}")))
            handles.append(block.attn.pattern_hook.register_forward_hook(save_pattern(f"pattern_L{i}")))
        return handles

    identity, x = nn.Identity(), torch.zeros(1)
    no_hooks = lambda: []  # noqa: E731
    # each case: (call, attach): attach() registers the case's hooks and returns their handles
    cases = {
        "bare_script": (lambda: script(ids), no_hooks),
        "bare_module": (lambda: model(ids), no_hooks),
        "extraction": (lambda: model(ids), extraction_hooks),
        "identity": (lambda: identity(x), no_hooks),
        "identity_hook": (lambda: identity(x), lambda: [identity.register_forward_hook(lambda m, a, o: None)]),
        "module_hooks": (lambda: model(ids), lambda: [m.register_forward_hook(lambda m, a, o: None) for m in model.modules()]),
    }
    with torch.no_grad():
        handles = extraction_hooks()
        model(ids)
        for handle in handles:
            handle.remove()
        print(json.dumps({"torch": torch.__version__, "threads": threads, "extracted_keys": len(cache), "modules": len(list(model.modules()))}), flush=True)
        cache.clear()
        for line in sys.stdin:
            case, iterations = line.split()
            call, attach = cases[case]
            handles = attach()
            start = time.perf_counter()
            for _ in range(int(iterations)):
                call()
            elapsed = (time.perf_counter() - start) * 1000 / int(iterations)
            for handle in handles:
                handle.remove()
            cache.clear()
            print(json.dumps({"ms": elapsed}), flush=True)


if __name__ == "__main__":
    main()
