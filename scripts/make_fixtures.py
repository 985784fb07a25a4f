"""Builds the test fixtures from seeded PyTorch modules, with reference outputs computed on the
original nn.Module (never on the exported file).

    python3 scripts/make_fixtures.py OUT_DIR             # test fixtures (not committed)
    python3 scripts/make_fixtures.py --bundled models/   # the small model the README's demo runs
    python3 scripts/make_fixtures.py --bench bench/models # GPT-2-small-shaped model for npm run bench

Each family (GPT-2-like, Llama-like) is exported traced and scripted. OUT_DIR/<family>.json holds the
configuration, the module tree and the reference logits for fixed inputs.
"""
import json
import math
import os
import sys
import warnings
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import easyroutine_export as exporter  # noqa: E402
from reference_models import (  # noqa: E402
    GPT,
    INDUCTION_CONFIG,
    Branchy,
    IntKeyed,
    LastLogitsGPT,
    Llama,
    SdpaModel,
    StateTupleGPT,
    Structured,
    TupleOut,
    VariantAttention,
    VariantModel,
    WithDropout,
    load_induction_model,
    repeated_batch,
    repeated_half_loss,
    rotate_half,
)


FAMILIES = {
    "gpt2": dict(cls=GPT, config=dict(vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16), seed=1234),
    "llama": dict(cls=Llama, config=dict(vocab=64, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, ctx=16), seed=4321),
}


def to_list(t: torch.Tensor):
    return t.detach().reshape(-1).tolist()


def module_tree(model: nn.Module):
    tree = []
    for path, module in model.named_modules():
        tree.append(
            {
                "path": path,
                "type": type(module).__name__,
                "parameters": [{"name": n, "shape": list(p.shape)} for n, p in module.named_parameters(recurse=False)],
            }
        )
    return tree


def build_family(name: str, out_dir: str):
    spec = FAMILIES[name]
    torch.manual_seed(spec["seed"])
    model = spec["cls"](**spec["config"]).eval()
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    vocab = spec["config"]["vocab"]
    input_ids = torch.randint(0, vocab, (2, 8), generator=gen)
    short_ids = torch.randint(0, vocab, (1, 5), generator=gen)
    with torch.no_grad():
        logits = model(input_ids)
        short_logits = model(short_ids)
        torch.jit.save(torch.jit.trace(model, input_ids), os.path.join(out_dir, f"{name}_traced.pt"))
        torch.jit.save(torch.jit.script(model), os.path.join(out_dir, f"{name}_scripted.pt"))
    reference = {
        "family": name,
        "config": spec["config"],
        "torch_version": torch.__version__,
        "modules": module_tree(model),
        "parameter_count": sum(p.numel() for p in model.parameters()),
        "cases": [
            {"input_ids": input_ids.tolist(), "shape": list(logits.shape), "logits": to_list(logits)},
            {"input_ids": short_ids.tolist(), "shape": list(short_logits.shape), "logits": to_list(short_logits)},
        ],
    }
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(reference, f)
    blocks = "transformer.h" if name == "gpt2" else "model.layers"
    attn = "attn" if name == "gpt2" else "self_attn"
    attention_paths = [f"{blocks}.{i}.{attn}" for i in range(spec["config"]["n_layers"])]
    edits = {
        "zero_head_1_2": (f"{blocks}.1.{attn}", "pattern", zero_head(2)),
        "copy_resid_0_5_to_3": (f"{blocks}.0", "output", copy_position(5, 3)),
    }
    with open(os.path.join(out_dir, f"{name}_hooks.json"), "w") as f:
        json.dump(hook_references(name, model, input_ids, attention_paths, edits, gradient_block=f"{blocks}.0"), f)


# ---------------------------------------------------------------- hook point references
def attention_internals(name: str, module: nn.Module, x: torch.Tensor, edit=None):
    """Recomputes an attention module's internals from its input, as the hook points define them,
    and its output (with `edit` applied to the pattern)."""
    B, T, C = x.shape
    if name == "gpt2":
        q, k, v = module.c_attn(x).split(C, dim=2)
        hs = C // module.n_heads
        q, k, v = (t.view(B, T, module.n_heads, hs).transpose(1, 2) for t in (q, k, v))
        kr, vr = k, v
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        scores = scores.masked_fill(module.bias[:, :, :T, :T] == 0, float("-inf"))
        project = module.c_proj
    elif name == "llama":
        hd = module.head_dim
        q = module.q_proj(x).view(B, T, module.n_heads, hd).transpose(1, 2)
        k = module.k_proj(x).view(B, T, module.n_kv_heads, hd).transpose(1, 2)
        v = module.v_proj(x).view(B, T, module.n_kv_heads, hd).transpose(1, 2)
        cos, sin = module.cos_cached[:T], module.sin_cached[:T]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = module.n_heads // module.n_kv_heads
        kr, vr = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, kr.transpose(2, 3)) / math.sqrt(hd) + torch.full((T, T), float("-inf")).triu(1)
        project = module.o_proj
    else:  # branchy
        q, k, v = module.qkv(x).chunk(3, dim=-1)
        hs = C // module.n_heads
        q, k, v = (t.view(B, T, module.n_heads, hs).transpose(1, 2) for t in (q, k, v))
        kr, vr = k, v
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
        if module.causal:
            scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        project = module.out
    pattern = F.softmax(scores, dim=-1)
    if edit is not None:
        pattern = edit(pattern)
    head_output = pattern @ vr
    out = project(head_output.transpose(1, 2).contiguous().view(B, T, C))
    return dict(queries=q, keys=k, values=v, scores=scores, pattern=pattern, head_output=head_output), out


def encode(t: torch.Tensor):
    t = t.detach().float()
    return {"shape": list(t.shape), "values": [x if math.isfinite(x) else ("-inf" if x < 0 else "inf") for x in t.reshape(-1).tolist()]}


def hook_references(name: str, model: nn.Module, ids: torch.Tensor, attention_paths, edits, gradient_block=None):
    """What PyTorch's forward hooks on the original module see at every module point, the attention
    internals recomputed in Python, and the logits after edits done in Python."""
    points = {}
    handles = []
    attention_inputs = {}

    def point(path, p):
        return f"{path}:{p}" if path else p

    def record(path):
        def hook(module, args, output):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if len(tensors) == 1:
                points[point(path, "input")] = encode(tensors[0])
            if isinstance(output, torch.Tensor):
                points[point(path, "output")] = encode(output)
            elif isinstance(output, tuple):
                for i, item in enumerate(output):
                    points[point(path, f"output.{i}")] = encode(item)
            elif isinstance(output, dict):
                for key, item in output.items():
                    points[point(path, f"output.{key}")] = encode(item)
            if path in attention_paths:
                attention_inputs[path] = tensors[0]
        return hook

    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList):
            continue
        handles.append(module.register_forward_hook(record(path)))
    with torch.no_grad():
        model(ids)
        for path in attention_paths:
            internals, _ = attention_internals(name, model.get_submodule(path), attention_inputs[path])
            for kind, value in internals.items():
                points[f"{path}:{kind}"] = encode(value)
    for h in handles:
        h.remove()

    gradients = None
    if gradient_block is not None:
        # keep_gradient: d logits[0, -1, v] / d (input of block 0), v the top prediction there
        block0 = gradient_block
        leaf = {}

        def make_leaf(module, args):
            x = args[0].detach().clone().requires_grad_(True)
            leaf["x"] = x
            return (x,)

        handle = model.get_submodule(block0).register_forward_pre_hook(make_leaf)
        out = model(ids)
        handle.remove()
        logits = out if isinstance(out, torch.Tensor) else out["logits"]
        v = int(logits[0, -1].argmax())
        (grad,) = torch.autograd.grad(logits[0, -1, v], [leaf["x"]])
        gradients = {"vocabulary_index": v, "input_embeddings_gradients": encode(grad)}

    results = {}
    for edit_name, (path, kind, fn) in edits.items():
        module = model.get_submodule(path)
        if kind == "pattern":
            def replace_output(module, args, output, fn=fn):
                return attention_internals(name, module, args[0], edit=fn)[1]
            handle = module.register_forward_hook(replace_output)
        else:
            handle = module.register_forward_hook(lambda module, args, output, fn=fn: fn(output))
        with torch.no_grad():
            logits = model(ids)
        handle.remove()
        results[edit_name] = encode(logits if isinstance(logits, torch.Tensor) else logits["logits"])
    return {"points": points, "edits": results, "gradients": gradients}


def zero_head(head):
    def edit(pattern):
        pattern = pattern.clone()
        pattern[:, head] = 0
        return pattern
    return edit


def copy_position(src, dst):
    def edit(output):
        output = output.clone()
        output[:, dst] = output[:, src]
        return output
    return edit


def build_misc(out_dir: str):
    torch.manual_seed(7)
    torch.jit.save(torch.jit.script(Structured()), os.path.join(out_dir, "structured.pt"))
    torch.jit.save(torch.jit.script(IntKeyed()), os.path.join(out_dir, "int_keyed.pt"))
    torch.jit.save(torch.jit.script(WithDropout()), os.path.join(out_dir, "dropout.pt"))
    tuple_model = TupleOut().eval()
    x = torch.randn(2, 4)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(tuple_model, x), os.path.join(out_dir, "tuple_traced.pt"))
        y = tuple_model(x)
    with open(os.path.join(out_dir, "tuple_traced.json"), "w") as f:
        json.dump({"x": to_list(x), "y0": to_list(y[0]), "y1": to_list(y[1])}, f)
    torch.manual_seed(1234)
    last = LastLogitsGPT(**FAMILIES["gpt2"]["config"]).eval()
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(last, ids), os.path.join(out_dir, "last_logits.pt"))
        logits = last(ids)
    with open(os.path.join(out_dir, "last_logits.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "logits": encode(logits)}, f)


def build_manifest(out_dir: str):
    """The GPT-2-like fixture exported by easyroutine's exporter with a mapping given by hand (a plain
    nn.Module's way to a manifest)."""
    torch.manual_seed(1234)
    model = GPT(**FAMILIES["gpt2"]["config"]).eval()
    layer = lambda i: {  # noqa: E731
        "block": f"transformer.h.{i}",
        "attention": f"transformer.h.{i}.attn",
        "attention_norm": f"transformer.h.{i}.ln_1",
        "mlp_norm": f"transformer.h.{i}.ln_2",
        "post_attention_norm": None,
        "post_mlp_norm": None,
        "parallel": False,
        "mlp": f"transformer.h.{i}.mlp",
        "mlp_in": f"transformer.h.{i}.mlp",
        "mlp_out": f"transformer.h.{i}.mlp",
        "projections": {"qkv": [f"transformer.h.{i}.attn.c_attn"], "fused_qkv": True, "output": f"transformer.h.{i}.attn.c_proj", "layout": "out_in"},
    }
    mapping = {"layers": [layer(0), layer(1)], "n_heads": 4, "n_kv_heads": 4, "head_dim": 8, "d_model": 32, "rope": None, "final_norm": "transformer.ln_f", "final_norm_kind": "LayerNorm", "unembed": "lm_head"}
    exporter.export(model, os.path.join(out_dir, "gpt2_manifest.pt"), mapping, hf_class=None, vocab=64)


def build_branchy(out_dir: str):
    torch.manual_seed(11)
    model = Branchy().eval()
    ids = torch.randint(0, 32, (2, 6), generator=torch.Generator().manual_seed(12))
    torch.jit.save(torch.jit.script(model), os.path.join(out_dir, "branchy_scripted.pt"))
    refs = hook_references("branchy", model, ids, ["blocks.0", "blocks.1"], {"zero_head_0_1": ("blocks.0", "pattern", zero_head(1))})
    refs["input_ids"] = ids.tolist()
    with open(os.path.join(out_dir, "branchy_hooks.json"), "w") as f:
        json.dump(refs, f)


def build_sdpa(out_dir: str):
    """Only with torch >= 2.5 (enable_gqa): libtorch 1.13 cannot load these files anyway."""
    torch.manual_seed(21)
    model = SdpaModel().eval()
    ids = torch.randint(0, 48, (2, 10), generator=torch.Generator().manual_seed(22))
    with torch.no_grad():
        logits = model(ids)
        torch.jit.save(torch.jit.trace(model, ids), os.path.join(out_dir, "sdpa_traced.pt"))
        torch.jit.save(torch.jit.script(model), os.path.join(out_dir, "sdpa_scripted.pt"))
        points = {}
        h = model.embed(ids)
        edited = None
        for i, layer in enumerate(model.layers):
            internals, out = layer.internals(h)
            for kind, value in internals.items():
                points[f"layers.{i}:{kind}"] = encode(value)
            h = h + out
        # zero head 1 of the additive-mask layer's pattern, in Python
        h = model.embed(ids)
        for i, layer in enumerate(model.layers):
            h = h + (layer.internals(h, edit=zero_head(1))[1] if i == 2 else layer(h))
        edited = model.head(h)
    with open(os.path.join(out_dir, "sdpa.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "logits": encode(logits), "points": points, "edits": {"zero_head_2_1": encode(edited)}}, f)


def build_attention_variants(out_dir: str):
    """Eager attention as other families write it (VariantAttention), traced; references from the
    module's own computation: every offered site, and the logits with head 1 of each layer's
    pattern zeroed."""
    torch.manual_seed(23)
    model = VariantModel().eval()
    ids = torch.randint(0, 48, (2, 10), generator=torch.Generator().manual_seed(24))
    points, edits = {}, {}
    with torch.no_grad():
        logits = model(ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(model, ids), os.path.join(out_dir, "attention_variants.pt"))
        h = model.embed(ids)
        for i, layer in enumerate(model.layers):
            record = {}
            out = layer.compute(h, record)
            for kind, value in record.items():
                points[f"layers.{i}:{kind}"] = encode(value)
            h = h + out
        for edited in range(len(model.layers)):
            h = model.embed(ids)
            for i, layer in enumerate(model.layers):
                h = h + (layer.compute(h, edit=zero_head(1)) if i == edited else layer(h))
            edits[f"zero_head_{edited}_1"] = encode(model.head(h))
    offered = {f"layers.{i}": list(VariantAttention.OFFERED[kind]) for i, kind in enumerate(VariantAttention.KINDS)}
    with open(os.path.join(out_dir, "attention_variants.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "logits": encode(logits), "kinds": list(VariantAttention.KINDS), "offered": offered, "points": points, "edits": edits}, f)


def build_state_tuple(out_dir: str):
    """Blocks that return states before the residual (StateTupleGPT), exported with the exporter's
    mapping found by data flow; references from PyTorch's hooks on the blocks' third output."""
    from types import SimpleNamespace

    torch.manual_seed(25)
    model = StateTupleGPT().eval()
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(26))
    # an infinity in the config, as Falcon-H1's has: the manifest must stay strict JSON
    config = SimpleNamespace(num_hidden_layers=2, num_attention_heads=4, hidden_size=32, vocab_size=64, to_dict=lambda: {"clamp": [0.0, float("inf")]})
    mapping = exporter.find_mapping(model, config, {"input_ids": ids})
    refs, handles = {}, []
    for i, block in enumerate(model.transformer.h):
        handles.append(block.register_forward_hook(lambda m, a, out, i=i: refs.__setitem__(f"resid_out_{i}", encode(out[2]))))
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: refs.__setitem__(f"resid_in_{i}", encode(a[0]))))
    with torch.no_grad():
        logits = model(ids)
    for h in handles:
        h.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exporter.export(model, os.path.join(out_dir, "state_tuple.pt"), mapping, config=config, vocab=64)
    with open(os.path.join(out_dir, "state_tuple.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "logits": encode(logits), "mapping": mapping, **refs}, f)


def build_induction(out_dir: str):
    """References for the demo's study on the bundled model (models/induction-2l.pt), computed on its
    nn.Module with PyTorch's hooks: each head's pattern, induction and previous-token scores, and the
    repeated-half loss before and after zero-ablating heads."""
    bundled = os.path.join(os.path.dirname(__file__), "..", "models", "induction-2l.pt")
    model = load_induction_model(bundled)
    half, layers, heads = INDUCTION_CONFIG["half"], INDUCTION_CONFIG["n_layers"], INDUCTION_CONFIG["n_heads"]
    ids = repeated_batch(torch.Generator().manual_seed(3), 4)
    seq = ids.shape[1]
    inputs = {}
    handles = [model.transformer.h[i].attn.register_forward_hook(lambda m, args, out, i=i: inputs.__setitem__(i, args[0])) for i in range(layers)]
    with torch.no_grad():
        logits = model(ids)
    for h in handles:
        h.remove()
    patterns = {i: attention_internals("gpt2", model.transformer.h[i].attn, inputs[i])[0]["pattern"] for i in range(layers)}
    queries = torch.arange(half + 1, seq)
    scores = {}
    for i in range(layers):
        for h in range(heads):
            p = patterns[i][:, h]
            induction = p[:, queries, queries - half + 1].mean().item()
            previous = p[:, torch.arange(1, seq), torch.arange(0, seq - 1)].mean().item()
            scores[f"L{i}H{h}"] = {"induction": induction, "previous": previous}

    def loss_without(ablated):
        hooks = []
        for layer, head in ablated:
            def replace(module, args, output, head=head):
                return attention_internals("gpt2", module, args[0], edit=zero_head(head))[1]
            hooks.append(model.transformer.h[layer].attn.register_forward_hook(replace))
        with torch.no_grad():
            out = model(ids)
        for hook in hooks:
            hook.remove()
        return repeated_half_loss(out, ids).item()

    losses = {"none": loss_without([]), "L1H1": loss_without([(1, 1)]), "L0H0": loss_without([(0, 0)])}
    with open(os.path.join(out_dir, "induction.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "half": half, "patterns": {f"L{i}": encode(patterns[i]) for i in range(layers)}, "scores": scores, "losses": losses, "logits": encode(logits)}, f)


def build_bundled(out_dir: str):
    torch.manual_seed(0)
    model = GPT(vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16).eval()
    example = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), os.path.join(out_dir, "tiny-gpt.pt"))


PATCHING = dict(
    clean=[[3, 17, 40, 9, 22, 51, 8, 30], [12, 5, 33, 60, 2, 44, 19, 27]],
    corrupted=[[3, 17, 11, 9, 22, 7, 8, 30], [12, 5, 58, 60, 2, 36, 19, 27]],
    correct=[40, 33],
    wrong=[11, 58],
)


LENS_POSITIONS = [1, 5, 7]
LENS_DIRECTIONS = [[40, 11], [33, 58]]


def build_lens(out_dir: str):
    """easyroutine's LogitLens by hand on the gpt2 (LayerNorm) and llama (RMSNorm) families: each
    block's output at LENS_POSITIONS, centred by its own mean for a LayerNorm, scaled by the final
    residual's statistics there, through the final norm's weight and bias and the unembedding."""
    out = {}
    for name, blocks, norm_path in (("gpt2", "transformer.h", "transformer.ln_f"), ("llama", "model.layers", "model.norm")):
        spec = FAMILIES[name]
        torch.manual_seed(spec["seed"])
        model = spec["cls"](**spec["config"]).eval()
        ids = torch.tensor(PATCHING["clean"])
        outputs = {}
        layers = model.get_submodule(blocks)
        handles = [layer.register_forward_hook(lambda m, args, o, i=i: outputs.__setitem__(i, o)) for i, layer in enumerate(layers)]
        with torch.no_grad():
            logits = model(ids)
        for h in handles:
            h.remove()
        norm = model.get_submodule(norm_path)
        final = outputs[len(layers) - 1][:, LENS_POSITIONS]
        layer_norm = isinstance(norm, nn.LayerNorm)
        scale = final.var(-1, unbiased=False, keepdim=True) if layer_norm else final.pow(2).mean(-1, keepdim=True)
        unembed = model.lm_head.weight
        result = {"eps": norm.eps, "centred": layer_norm, "weight": to_list(norm.weight), "bias": to_list(norm.bias) if layer_norm else None, "layers": []}
        with torch.no_grad():
            for i in range(len(layers)):
                x = outputs[i][:, LENS_POSITIONS]
                if layer_norm:
                    x = x - x.mean(-1, keepdim=True)
                x = x / torch.sqrt(scale + norm.eps) * norm.weight + (norm.bias if layer_norm else 0)
                lens_logits = x @ unembed.T
                directions = torch.stack([lens_logits[b, :, a] - lens_logits[b, :, c] for b, (a, c) in enumerate(LENS_DIRECTIONS)])
                result["layers"].append({"logits": encode(lens_logits), "logit_diff": directions.tolist()})
        result["model_logits"] = encode(logits[:, LENS_POSITIONS])
        out[name] = result
    with open(os.path.join(out_dir, "lens.json"), "w") as f:
        json.dump({"positions": LENS_POSITIONS, "directions": LENS_DIRECTIONS, "input_ids": PATCHING["clean"], **out}, f)


def build_patching(out_dir: str):
    """Activation patching sweeps done by hand with PyTorch hooks on the nn.Module of the llama
    family (the model in llama_traced.pt): the corrupted batch is run with one activation taken from
    the clean run, and the metric is the logit difference correct - wrong at the last position,
    averaged over rows. resid: each block's input at one position (TransformerLens's resid_pre sweep);
    heads: one head's output before o_proj (its slice of o_proj's input) at every position. Also the
    logit lens of clean row 0 (top token and its probability per layer and position), and greedy
    generation from the clean rows' first 5 tokens, plain and with head 1 of layer 0 zeroed."""
    spec = FAMILIES["llama"]
    torch.manual_seed(spec["seed"])
    model = spec["cls"](**spec["config"]).eval()
    clean, corrupted = torch.tensor(PATCHING["clean"]), torch.tensor(PATCHING["corrupted"])
    rows = torch.arange(clean.shape[0])
    correct, wrong = torch.tensor(PATCHING["correct"]), torch.tensor(PATCHING["wrong"])

    def metric(logits):
        last = logits[:, -1]
        return (last[rows, correct] - last[rows, wrong]).mean().item()

    layers = model.model.layers
    head_dim = layers[0].self_attn.head_dim
    n_heads = spec["config"]["n_heads"]
    block_inputs, head_inputs = {}, {}
    handles = [layer.register_forward_pre_hook(lambda m, args, i=i: block_inputs.__setitem__(i, args[0].clone())) for i, layer in enumerate(layers)]
    handles += [layer.self_attn.o_proj.register_forward_pre_hook(lambda m, args, i=i: head_inputs.__setitem__(i, args[0].clone())) for i, layer in enumerate(layers)]
    with torch.no_grad():
        clean_metric = metric(model(clean))
    for h in handles:
        h.remove()

    def patched(module, edit):
        handle = module.register_forward_pre_hook(lambda m, args: (edit(args[0].clone()),))
        with torch.no_grad():
            value = metric(model(corrupted))
        handle.remove()
        return value

    def set_position(x, i, p):
        x[:, p] = block_inputs[i][:, p]
        return x

    def set_head(x, i, h):
        x[..., h * head_dim : (h + 1) * head_dim] = head_inputs[i][..., h * head_dim : (h + 1) * head_dim]
        return x

    resid = [[patched(layer, lambda x, i=i, p=p: set_position(x, i, p)) for p in range(clean.shape[1])] for i, layer in enumerate(layers)]
    heads = [[patched(layer.self_attn.o_proj, lambda x, i=i, h=h: set_head(x, i, h)) for h in range(n_heads)] for i, layer in enumerate(layers)]
    with torch.no_grad():
        corrupted_metric = metric(model(corrupted))
        # the logit lens on clean row 0: each block's output through the final norm and the unembedding
        outputs = {}
        handles = [layer.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out)) for i, layer in enumerate(layers)]
        model(clean[:1])
        for h in handles:
            h.remove()
        probabilities = [torch.softmax(model.lm_head(model.model.norm(outputs[i])), -1)[0] for i in range(len(layers))]
        lens = {"tokens": [p.argmax(-1).tolist() for p in probabilities], "probabilities": [p.max(-1).values.tolist() for p in probabilities]}
    # greedy generation, a full forward per step: plain, and with head 1 of layer 0 zeroed before o_proj
    def greedy(prompt, steps=6):
        ids = prompt.clone()
        with torch.no_grad():
            for _ in range(steps):
                ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], 1)
        return ids[:, prompt.shape[1]:].tolist()

    prompt = clean[:, :5]
    generation = {"prompt": prompt.tolist(), "greedy": greedy(prompt)}
    handle = layers[0].self_attn.o_proj.register_forward_pre_hook(lambda m, args: (torch.cat([args[0][..., :head_dim], torch.zeros_like(args[0][..., head_dim : 2 * head_dim]), args[0][..., 2 * head_dim :]], -1),))
    generation["ablated"] = greedy(prompt)
    handle.remove()
    # compute_patching as easyroutine documents it: base = clean, target = corrupted; block 0's input at
    # position 2, head 1 of layer 1 (before o_proj) at the last position, layer 1's MLP output at 5
    base_values = {}
    handles = [
        layers[0].register_forward_pre_hook(lambda m, args: base_values.__setitem__("resid_in_0", args[0][:, 2].clone())),
        layers[1].self_attn.o_proj.register_forward_pre_hook(lambda m, args: base_values.__setitem__("head", args[0][:, -1, head_dim : 2 * head_dim].clone())),
        layers[1].mlp.register_forward_hook(lambda m, args, out: base_values.__setitem__("mlp_out_1", out[:, 5].clone())),
    ]
    with torch.no_grad():
        base_logits = model(clean)[:, -1]
        for h in handles:
            h.remove()
        target_clean_logits = model(corrupted)[:, -1]

        def put_resid(m, args):
            x = args[0].clone()
            x[:, 2] = base_values["resid_in_0"]
            return (x,)

        def put_head(m, args):
            x = args[0].clone()
            x[:, -1, head_dim : 2 * head_dim] = base_values["head"]
            return (x,)

        def put_mlp(m, args, out):
            out = out.clone()
            out[:, 5] = base_values["mlp_out_1"]
            return out

        handles = [layers[0].register_forward_pre_hook(put_resid), layers[1].self_attn.o_proj.register_forward_pre_hook(put_head), layers[1].mlp.register_forward_hook(put_mlp)]
        target_patched_logits = model(corrupted)[:, -1]
        for h in handles:
            h.remove()
    log = lambda x: torch.log_softmax(x, -1)
    kl = lambda p, q: F.kl_div(log(q), log(p), reduction="batchmean", log_target=True).item()
    base_tokens, target_tokens = [PATCHING["wrong"][0], 7], [PATCHING["correct"][0], 8]
    diff = lambda logits, s, c: (logits[:, c] - logits[:, s]).mean().item()
    compute = {
        "base_tokens": base_tokens,
        "target_tokens": target_tokens,
        "base_logits": encode(base_logits),
        "target_clean_logits": encode(target_clean_logits),
        "target_patched_logits": encode(target_patched_logits),
        "kl_clean|base": kl(base_logits, target_clean_logits),
        "kl_patched|base": kl(base_logits, target_patched_logits),
        "kl_patched|clean": kl(target_clean_logits, target_patched_logits),
        "logit_diff_in_clean": [diff(target_clean_logits, s, c) for s, c in zip(base_tokens, target_tokens)],
        "logit_diff_in_patched": [diff(target_patched_logits, s, c) for s, c in zip(base_tokens, target_tokens)],
    }
    with open(os.path.join(out_dir, "llama_patching.json"), "w") as f:
        json.dump({**PATCHING, "clean_metric": clean_metric, "corrupted_metric": corrupted_metric, "resid_in": resid, "heads": heads, "lens": lens, "generation": generation, "compute_patching": compute}, f)


def main(argv: List[str]):
    # Shapes are fixed per fixture, so the tracer's notes on Python numbers are expected.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    if argv[:1] == ["--bench"]:
        os.makedirs(argv[1], exist_ok=True)
        torch.manual_seed(0)
        model = GPT(vocab=50257, d_model=768, n_heads=12, n_layers=12, ctx=1024).eval()
        with torch.no_grad():
            torch.jit.save(torch.jit.trace(model, torch.randint(0, 50257, (1, 64))), os.path.join(argv[1], "gpt2-small-shaped.pt"))
        return
    if argv[:1] == ["--bundled"]:
        os.makedirs(argv[1], exist_ok=True)
        build_bundled(argv[1])
        return
    out_dir = argv[0]
    os.makedirs(out_dir, exist_ok=True)
    for name in FAMILIES:
        build_family(name, out_dir)
    build_misc(out_dir)
    build_manifest(out_dir)
    build_branchy(out_dir)
    build_induction(out_dir)
    build_patching(out_dir)
    build_lens(out_dir)
    build_attention_variants(out_dir)
    build_state_tuple(out_dir)
    if hasattr(F, "scaled_dot_product_attention") and "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or ""):
        build_sdpa(out_dir)
    with open(os.path.join(out_dir, "STAMP"), "w") as f:
        f.write(torch.__version__ + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
