"""The Python side of `npm run bench`: the same work as the Node side, on the same machine, libtorch
and weights, in the way a Python researcher does it (easyroutine registers forward hooks on the
original nn.Module).

    python3 bench/python_hooks.py MODEL FILE RUNS ITERATIONS THREADS POSITIONS IDS

MODEL is `bundled` (scripts/train_induction.py's module) or `gpt2-small-shaped` (make_fixtures.GPT);
the module's weights are loaded from FILE, the TorchScript file the Node side runs. POSITIONS is a JSON
list of the target positions, IDS one row of token ids. Prints JSON with median milliseconds per forward (medians of RUNS runs
of ITERATIONS forwards each, in alternating runs after two warm-up runs):
  bare_script_ms   torch.jit.load(FILE), the very file Node runs
  bare_module_ms   the nn.Module
  extraction_ms    the nn.Module with forward hooks keeping every residual (block inputs, the MLP
                   norms' inputs when there are MLPs, block outputs) and every head's pattern,
                   cloned and sliced at the target positions
  empty_hooks_ms   the nn.Module with a hook that does nothing on every module
  hook_call_us     microseconds a forward hook that does nothing adds to a module call
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import make_fixtures as fx  # noqa: E402
import train_induction as ti  # noqa: E402


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
    module = ti.induction_model() if name == "bundled" else fx.GPT(vocab=50257, d_model=768, n_heads=12, n_layers=12, ctx=1024)
    module.load_state_dict(torch.jit.load(file).state_dict())
    return with_pattern_hook_points(module.eval())


def compare(cases, runs, iterations):
    """Median milliseconds per call of each (call, attach) case, measured in alternating runs after two
    warm-up runs (so drift hits all alike); attach() registers the case's hooks and returns their handles."""
    samples = [[] for _ in cases]
    for run in range(-2, runs):
        for i, (call, attach) in enumerate(cases):
            handles = attach()
            start = time.perf_counter()
            for _ in range(iterations):
                call()
            elapsed = (time.perf_counter() - start) * 1000 / iterations
            for h in handles:
                h.remove()
            if run >= 0:
                samples[i].append(elapsed)
    return [statistics.median(s) for s in samples]


def main():
    name, file = sys.argv[1], sys.argv[2]
    runs, iterations, threads = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    positions = json.loads(sys.argv[6])
    torch.set_num_threads(threads)
    model = build(name, file)
    script = torch.jit.load(file).eval()
    ids = torch.tensor([json.loads(sys.argv[7])])
    cache = {}

    def save(key, take_input=False):
        def hook(module, args, output):
            value = args[0] if take_input else output
            cache[key] = value.detach().clone()[:, positions]
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
            handles.append(block.register_forward_hook(save(f"resid_in_{i}", take_input=True)))
            handles.append(block.register_forward_hook(save(f"resid_out_{i}")))
            if hasattr(block, "ln_2"):
                handles.append(block.ln_2.register_forward_hook(save(f"resid_mid_{i}", take_input=True)))
            handles.append(block.attn.pattern_hook.register_forward_hook(save_pattern(f"pattern_L{i}")))
        return handles

    modules = [m for m in model.modules() if not isinstance(m, nn.ModuleList)]  # a ModuleList is never called

    def empty_hooks():
        return [m.register_forward_hook(lambda module, args, output: None) for m in modules]

    results = {"torch": torch.__version__, "threads": threads, "empty_hooks": len(modules)}
    with torch.no_grad():
        none = lambda: []  # noqa: E731
        bare_script, bare_module, extraction, empty = compare(
            [(lambda: script(ids), none), (lambda: model(ids), none), (lambda: model(ids), extraction_hooks), (lambda: model(ids), empty_hooks)], runs, iterations
        )
    results.update(bare_script_ms=bare_script, bare_module_ms=bare_module, extraction_ms=extraction, empty_hooks_ms=empty, extracted_keys=len(cache))
    # The per-call cost of a forward hook, apart from any model: a module that does nothing, called
    # with and without a hook that does nothing (a few µs against a forward's noise is lost).
    identity, x = nn.Identity(), torch.zeros(1)
    plain, hooked = compare([(lambda: identity(x), none), (lambda: identity(x), lambda: [identity.register_forward_hook(lambda m, a, o: None)])], runs, 2000)
    results["hook_call_us"] = (hooked - plain) * 1000
    print(json.dumps(results))


if __name__ == "__main__":
    main()
