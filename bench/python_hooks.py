"""The Python side of `npm run bench`: the same work as the Node side, with PyTorch forward hooks on the
original nn.Module (the way easyroutine does it), on the same machine and libtorch.

    python3 bench/python_hooks.py MODEL RUNS ITERATIONS THREADS

MODEL is tiny-gpt (models/tiny-gpt.pt's module) or gpt2-small-shaped (bench/models/'s). Prints JSON
with median milliseconds per forward: bare, extraction of every resid_out and every pattern (clone
and slice at the target positions: here all positions), and a hook that does nothing (per-call cost).
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


def build(name):
    torch.manual_seed(0)
    if name == "tiny-gpt":
        model = fx.GPT(vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16).eval()
        ids = torch.tensor([[3, 14, 15, 9, 26, 53, 5, 8]])
    else:
        model = fx.GPT(vocab=50257, d_model=768, n_heads=12, n_layers=12, ctx=1024).eval()
        ids = torch.tensor([[(i * 7919) % 50257 for i in range(64)]])
    return with_pattern_hook_points(model), ids


def median_ms(fn, runs, iterations):
    samples = []
    for run in range(-2, runs):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        if run >= 0:
            samples.append((time.perf_counter() - start) * 1000 / iterations)
    return statistics.median(samples)


def main():
    name, runs, iterations, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    model, ids = build(name)
    positions = list(range(ids.shape[1]))
    cache = {}

    def save(key):
        def hook(module, args, output):
            cache[key] = output.detach().clone()[..., positions, :]
        return hook

    def save_pattern(key):
        def hook(module, args, output):
            pattern = output.detach().clone()
            for h in range(pattern.size(1)):
                cache[f"{key}H{h}"] = pattern[:, h, positions][:, :, positions]
        return hook

    results = {"torch": torch.__version__, "threads": threads}
    with torch.no_grad():
        results["bare_ms"] = median_ms(lambda: model(ids), runs, iterations)
        handles = [block.register_forward_hook(save(f"resid_out_{i}")) for i, block in enumerate(model.transformer.h)]
        handles += [block.attn.pattern_hook.register_forward_hook(save_pattern(f"pattern_L{i}")) for i, block in enumerate(model.transformer.h)]
        results["extraction_ms"] = median_ms(lambda: model(ids), runs, iterations)
        results["extracted_keys"] = len(cache)
        for h in handles:
            h.remove()
        # per-call cost of a hook that does nothing, on every module
        modules = [m for m in model.modules()]
        handles = [m.register_forward_hook(lambda module, args, output: None) for m in modules]
        results["empty_hooks_ms"] = median_ms(lambda: model(ids), runs, iterations)
        results["empty_hooks"] = len(modules)
        for h in handles:
            h.remove()
        results["bare_again_ms"] = median_ms(lambda: model(ids), runs, iterations)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
