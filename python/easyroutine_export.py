"""Exports a Hugging Face causal LM to TorchScript for easyroutine, with its architecture written into
the file.

    python3 easyroutine_export.py MODEL_DIR OUT.pt [--attn eager|sdpa] [--dtype float32|float16|bfloat16]
                                  [--device cpu|cuda]

(`npx easyroutine export` runs this with your Python.) The model is loaded from a local directory
(`save_pretrained` output or a hub snapshot), wrapped so that `forward(input_ids, attention_mask)`
returns the logits, traced, checked against the nn.Module on a sample and on a left-padded batch, and
saved with two extra files in the archive:

- `easyroutine.json`, the manifest: format version, the Hugging Face class and config, and the
  architecture mapping (per layer: block, attention and its q/k/v/o projections with their layout,
  the norms before attention and before the MLP, sandwich norms, parallel attention + MLP, the MLP's
  input and output; head counts and RoPE; final norm; unembedding);
- `tokenizer.json` and `tokenizer_config.json`, when the model directory has them (HookedModel
  encodes string prompts with them: the pad token and clean-up rules are in the config).

The mapping is found by data flow on the nn.Module, with PyTorch's forward hooks on one sample: a
norm's role is where its output goes (the attention's input or the MLP's), the MLP is what reads the
MLP norm's output, W_O is the projection the attention calls last on its merged heads. A plain
nn.Module is exported with `export(module, out, mapping=...)`, the mapping given by hand.
"""
import argparse
import contextlib
import inspect
import json
import math
import os
import re
import sys
import warnings
from typing import Dict, List, Optional

MANIFEST_NAME = "easyroutine.json"
# the tokenizer files copied from the model directory into the archive, as they are
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
MANIFEST_VERSION = 1


def _require():
    missing = []
    try:
        import torch  # noqa: F401
    except ImportError:
        missing.append("torch")
    try:
        import transformers  # noqa: F401
    except ImportError:
        missing.append("transformers")
    if missing:
        sys.stderr.write(
            f"easyroutine export: this Python ({sys.executable}) lacks {' and '.join(missing)}; "
            f"install with: {sys.executable} -m pip install {' '.join(missing)}\n"
            "or point EASYROUTINE_PYTHON at a Python that has them.\n"
        )
        sys.exit(3)


def _wrapper_class():  # built on demand: torch is imported only after the requirement check
    import torch

    class CausalLMLogits(torch.nn.Module):
        """forward(input_ids, attention_mask) -> logits of a Hugging Face causal LM."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    return CausalLMLogits


def _patch_untraceable(model):
    """Replaces what a trace cannot keep by the same computation in traceable ops: Python autograd
    Functions that torch.jit.save refuses (Bloom's GeLU: `bloom_gelu_forward` is what its Function's
    forward calls), and values a trace would freeze at the sample's length (CPM-Ant's mask)."""
    patched = []
    try:
        from transformers.models.bloom import modeling_bloom

        for name, module in model.named_modules():
            if isinstance(module, getattr(modeling_bloom, "BloomGelu", ())):
                module.forward = modeling_bloom.bloom_gelu_forward
                patched.append(name)
    except ImportError:
        pass
    try:
        from transformers.models.cpmant import modeling_cpmant

        for name, module in model.named_modules():
            if isinstance(module, getattr(modeling_cpmant, "CpmAntModel", ())):
                module._prepare_attention_mask = _cpmant_attention_mask.__get__(module)
                patched.append(name)
    except ImportError:
        pass
    return patched


@contextlib.contextmanager
def _traceable_scatter():
    """Tensor.scatter with a Python bool as its value (the sparse-attention indexers of DeepSeek-V3.2,
    GLM-MoE-DSA, AXK2, HY-V4: `ones(bool).scatter(-1, topk, False)`) trips an internal assertion of
    the tracer's alias analysis; while tracing, such a call scatters a tensor of that value instead,
    the same result in ops the tracer takes."""
    import torch

    original = torch.Tensor.scatter

    def scatter(self, dim, index, *args, **kwargs):
        value = kwargs.get("value", args[0] if args else None)
        if isinstance(value, bool) and "reduce" not in kwargs and len(args) <= 1:
            # no bool scalar reaches the graph: the tracer's alias analysis trips on those too
            source = torch.ones_like(index, dtype=self.dtype) if value else torch.zeros_like(index, dtype=self.dtype)
            return original(self, dim, index, source)
        return original(self, dim, index, *args, **kwargs)

    torch.Tensor.scatter = scatter
    try:
        yield
    finally:
        torch.Tensor.scatter = original


def _cpmant_attention_mask(self, input_ids, span, context, length):
    """CpmAntModel._prepare_attention_mask with its left-padding mask from torch.arange: the original
    builds it with torch.tensor(list(range(...))), which a trace freezes at the sample's length."""
    import torch

    batch = input_ids.size(0)
    seqlen = input_ids.size(1)
    device = input_ids.device
    directional_mask_2d = torch.arange(seqlen, device=device) <= torch.arange(seqlen, device=device).view(-1, 1)
    attention_mask = context[:, None, :] | (context[:, :, None].logical_not() & directional_mask_2d.view(1, seqlen, seqlen))
    attention_mask = attention_mask & (span[:, None, :] == span[:, :, None])
    # range(seqlen - prompt_length)[::-1], as a traced op
    positions = torch.arange(seqlen - self.prompt_length - 1, -1, -1, device=device)
    mask_1d = positions[None, :].repeat(batch, 1) < length[:, None]
    mask_1d = torch.cat((torch.ones(batch, self.prompt_length, device=device).bool(), mask_1d), dim=1)
    return mask_1d.view(batch, seqlen, 1) & mask_1d.view(batch, 1, seqlen) & attention_mask


def _first_tensor(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        for v in value.values():
            t = _first_tensor(v)
            if t is not None:
                return t
    if hasattr(value, "to_tuple"):
        return _first_tensor(value.to_tuple())
    return None


def _same(a, b) -> bool:
    """Whether two recorded values are the same data (a view or reshape counts as the same)."""
    import torch

    return a is not None and b is not None and a.numel() == b.numel() and a.dtype == b.dtype and torch.equal(a.reshape(-1), b.reshape(-1))


def _record(model, inputs) -> Dict[str, dict]:
    """Every module's hidden-states input, first tensor output and tuple elements on one forward, in call order."""
    import torch

    seen: Dict[str, dict] = {}
    order = [0]
    handles = []
    for path, module in model.named_modules():
        def hook(mod, args, kwargs, output, path=path):
            hidden = kwargs.get("hidden_states", None)
            if hidden is None:
                hidden = _first_tensor(args)
            if path not in seen:
                first = _first_tensor(output)
                # a tuple's tensors by position: the residual need not come first (xLSTM's blocks return their states before it)
                elements = [v.detach().clone() if isinstance(v, torch.Tensor) else None for v in output] if isinstance(output, tuple) else None
                seen[path] = {"input": None if hidden is None else hidden.detach().clone(), "output": None if first is None else first.detach().clone(), "elements": elements, "order": order[0]}
                order[0] += 1
        try:
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
        except TypeError:  # torch < 2.0 has no keyword arguments in hooks: plain modules pass hidden states positionally
            handles.append(module.register_forward_hook(lambda mod, args, output, hook=hook: hook(mod, args, {}, output)))
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    return seen


def residual_element(recorded: dict, next_input) -> Optional[int]:
    """Which element of a block's tuple output is the residual stream: the one the next block (or the
    final norm) reads, by data flow; None for a block that returns one tensor."""
    elements = recorded.get("elements")
    if elements is None:
        return None
    same = [i for i, e in enumerate(elements) if e is not None and _same(e, next_input)]
    if same:
        return same[0]
    shaped = [i for i, e in enumerate(elements) if e is not None and recorded["input"] is not None and e.shape == recorded["input"].shape]
    return shaped[0] if shaped else 0


def _has_weight(module) -> bool:
    return getattr(module, "weight", None) is not None and module.weight.dim() == 2


def _is_norm(module) -> bool:
    name = type(module).__name__
    # RobertaPreLayerNormAttention is an attention
    return ("Norm" in name or "norm" in name.lower()) and "Attention" not in name


def _layout(module) -> str:
    return "in_out" if type(module).__name__ == "Conv1D" else "out_in"


def _text_config(config):
    """The language model's config: the config itself, or its text part in a composite config."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def find_mapping(model, config, sample) -> dict:
    """The architecture mapping of a Hugging Face causal LM (paths relative to `model`), by data flow."""
    import torch

    config = _text_config(config)

    if getattr(config, "num_attention_heads", None) is None:
        raise SystemExit(
            f"easyroutine export: {type(model).__name__}'s config has no num_attention_heads: a model without attention (state-space, recurrent), "
            "or one whose config describes its attention per part (BLT); the mapping needs one head count"
        )
    n_layers = config.num_hidden_layers
    modules = dict(model.named_modules())
    layer_lists = [p for p, m in modules.items() if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers]
    # a multimodal model's vision or audio tower may have as many layers as its language model
    towers = re.compile(r"(^|\.)(vision|image|audio|visual)", re.IGNORECASE)
    layer_lists = [p for p in layer_lists if not towers.search(p)] or layer_lists
    if not layer_lists:
        raise SystemExit(f"easyroutine export: no list of {n_layers} decoder layers found in {type(model).__name__}")
    layers_path = layer_lists[0]
    seen = _record(model, sample)
    n_heads = config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        n_kv = 1
    d_model = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or d_model // n_heads

    def inside(path: str, root: str) -> bool:
        return path == root or path.startswith(root + ".")

    layers = []
    for i in range(n_layers):
        block = f"{layers_path}.{i}" if layers_path else str(i)
        within = [p for p in modules if p.startswith(block + ".") and p in seen]
        direct = [p for p in within if p.count(".") == block.count(".") + 1 and not _is_norm(modules[p])]
        attention = next((p for p in direct if "Attention" in type(modules[p]).__name__), None) or next((p for p in direct if "att" in p.rsplit(".", 1)[1].lower()), None)
        mixer = attention is None
        if mixer and "Attention" in type(modules[block]).__name__:
            raise SystemExit(f"easyroutine export: {layers_path} is a list of attentions, not of blocks: {type(model).__name__} keeps its attentions, norms and MLPs in lists of their own, which the mapping does not describe")
        if mixer:
            # a hybrid's layer without attention (Mamba, a recurrence): its token mixer, the first
            # module with weights it calls, holds the attention's place (attn_out is its output;
            # it has no pattern, queries or keys)
            mixers = sorted((p for p in direct if any(True for _ in modules[p].parameters())), key=lambda p: seen[p]["order"])
            if not mixers:
                raise SystemExit(f"easyroutine export: layer {block} has no attention module and no token mixer")
            attention = mixers[0]
        attn_in = seen[attention]["input"]
        outside_attention = [p for p in within if not inside(p, attention)]
        attention_norm = next((p for p in outside_attention if _is_norm(modules[p]) and _same(seen[p]["output"], attn_in)), None)
        # the MLP: a direct child with weights, not the attention, not a norm; else (OPT) the first
        # projection outside the attention
        children = [p for p in outside_attention if p.count(".") == block.count(".") + 1]
        mlp = next((p for p in children if not _is_norm(modules[p]) and any(True for _ in modules[p].parameters())), None)
        mlp_in_module = mlp
        mlp_out_module = mlp
        if mlp is None or _has_weight(modules[mlp]):
            projections = sorted((p for p in outside_attention if _has_weight(modules[p]) and not _is_norm(modules[p])), key=lambda p: seen[p]["order"])
            if projections:
                mlp, mlp_in_module, mlp_out_module = None, projections[0], projections[-1]
        mlp_input = seen[mlp_in_module]["input"] if mlp_in_module else None
        norms = [p for p in outside_attention if _is_norm(modules[p])]
        mlp_norm = next((p for p in norms if _same(seen[p]["output"], mlp_input)), None)
        block_in = seen[block]["input"]
        parallel = mlp_input is not None and (_same(mlp_input, attn_in) or (mlp_norm is not None and _same(seen[mlp_norm]["input"], block_in)))
        attn_out = seen[attention]["output"]
        post_attention_norm = next((p for p in norms if p not in (attention_norm, mlp_norm) and _same(seen[p]["input"], attn_out)), None)
        mlp_out = seen[mlp_out_module]["output"] if mlp_out_module else None
        post_mlp_norm = next((p for p in norms if p not in (attention_norm, mlp_norm, post_attention_norm) and _same(seen[p]["input"], mlp_out)), None)
        attn_children = sorted((p for p in within if inside(p, attention) and p != attention and _has_weight(modules[p])), key=lambda p: seen[p]["order"])
        merged = n_heads * head_dim
        o_candidates = [p for p in attn_children if seen[p]["input"] is not None and seen[p]["input"].shape[-1] == merged]
        o_proj = o_candidates[-1] if o_candidates else None
        qkv = [p for p in attn_children if p != o_proj]
        layers.append(
            {
                "block": block,
                "attention": attention,
                "token_mixer": mixer,
                "projections": {
                    "qkv": qkv,
                    "fused_qkv": len(qkv) == 1,
                    "output": o_proj,
                    "layout": _layout(modules[o_proj]) if o_proj else None,
                },
                "attention_norm": attention_norm,
                "mlp_norm": mlp_norm,
                "post_attention_norm": post_attention_norm,
                "post_mlp_norm": post_mlp_norm,
                "parallel": bool(parallel),
                "mlp": mlp,
                "mlp_in": mlp_in_module,
                "mlp_out": mlp_out_module,
            }
        )
    last = seen[layers[-1]["block"]]
    last_outputs = [e for e in (last.get("elements") or [last["output"]]) if e is not None]
    in_layers = lambda p: inside(p, layers_path)  # noqa: E731
    final_norm = next((p for p in seen if not in_layers(p) and p and _is_norm(modules[p]) and any(_same(seen[p]["input"], e) for e in last_outputs)), None)
    # each block's residual element: what the next block reads; after the last, the final norm
    for i, layer in enumerate(layers):
        recorded = seen[layer["block"]]
        next_input = seen[layers[i + 1]["block"]]["input"] if i + 1 < len(layers) else (seen[final_norm]["input"] if final_norm else None)
        index = residual_element(recorded, next_input)
        layer["resid_out"] = None if index is None else f"output.{index}"
    logits = seen[""]["output"]
    # the output embedding; logits may be post-processed after it (Gemma 2's soft-capping)
    output_embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    unembed = next((p for p, m in modules.items() if output_embeddings is not None and m is output_embeddings), None)
    if unembed is None:
        unembed = next((p for p in seen if p and _has_weight(modules[p]) and _same(seen[p]["output"], logits)), None)
    rope = None
    if getattr(config, "rope_theta", None) is not None or "rotary" in json.dumps(config.to_dict()).lower() or getattr(config, "rope_parameters", None):
        params = getattr(config, "rope_parameters", None) or {}
        rope = {"theta": getattr(config, "rope_theta", None) or params.get("rope_theta"), "partial_rotary_factor": getattr(config, "partial_rotary_factor", None)}
    return {
        "layers": layers,
        "n_heads": n_heads,
        "n_kv_heads": n_kv,
        "head_dim": head_dim,
        "d_model": d_model,
        "rope": rope,
        "final_norm": final_norm,
        "final_norm_kind": type(modules[final_norm]).__name__ if final_norm else None,
        "unembed": unembed,
    }


def prefixed(mapping: dict, prefix: str) -> dict:
    """The mapping with every module path under `prefix` (the wrapper's attribute)."""
    def p(path):
        return None if path is None else (prefix + "." + path if path else prefix)

    out = dict(mapping)
    out["final_norm"] = p(mapping["final_norm"])
    out["unembed"] = p(mapping["unembed"])
    out["layers"] = []
    for layer in mapping["layers"]:
        entry = {k: (p(v) if isinstance(v, str) or (v is None and k not in ("parallel",)) else v) for k, v in layer.items() if k not in ("projections", "resid_out")}
        if "resid_out" in layer:
            entry["resid_out"] = layer["resid_out"]
        proj = dict(layer["projections"])
        proj["qkv"] = [p(x) for x in proj["qkv"]]
        proj["output"] = p(proj["output"])
        entry["projections"] = proj
        out["layers"].append(entry)
    return out


def sample_inputs(vocab: int, device: str):
    """A batch of two rows, the second left-padded by three tokens (tracing sees a mask with padding)."""
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, :3] = 0
    return ids.to(device), mask.to(device)


def check_trace(traced, module, vocab: int, device: str, tolerance: float, with_mask: bool = True):
    """The traced file against the nn.Module on a full batch and, for a model that takes a mask, on
    a left-padded one, both of another length than the trace's."""
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, vocab, (3, 5), generator=g).to(device)
    full = torch.ones(3, 5, dtype=torch.long, device=device)
    padded = full.clone()
    padded[1, :2] = 0
    padded[2, :4] = 0
    worst = 0.0
    for mask in (full, padded) if with_mask else (full,):
        args = (ids, mask) if with_mask else (ids,)
        with torch.no_grad():
            expected = module(*args)
            got = traced(*args)
        real = mask.bool()
        diff = (expected - got).abs()[real].max().item()
        worst = max(worst, diff)
        if not diff <= tolerance:
            raise SystemExit(f"easyroutine export: the trace differs from the model by {diff:.3g} (tolerance {tolerance:g}) on a {'left-padded' if not bool(real.all()) else 'full'} batch")
    return worst


def _finite(value):
    """`value` with every non-finite float as the string Python writes it ("inf", "-inf", "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _takes_mask(model) -> bool:
    return len(inspect.signature(model.forward).parameters) >= 2


def export(model, out: str, mapping: dict, config=None, tokenizer_files: Optional[dict] = None, hf_class: Optional[str] = None, device: str = "cpu", tolerance: float = 1e-4, vocab: Optional[int] = None):
    """Traces `model` (forward(input_ids[, attention_mask]) -> logits) and saves it with the manifest.

    `mapping` is the architecture as find_mapping returns it (module paths of `model`); for a plain
    nn.Module, write it by hand: {"layers": [{"block", "attention", "attention_norm", "mlp_norm",
    "post_attention_norm", "post_mlp_norm", "parallel", "mlp", "mlp_in", "mlp_out", "projections":
    {"qkv": [...], "fused_qkv", "output", "layout": "out_in" | "in_out"}}, ...], "n_heads",
    "n_kv_heads", "head_dim", "d_model", "rope", "final_norm", "final_norm_kind", "unembed"}.
    """
    import torch

    missing = [k for k in ("layers", "n_heads", "n_kv_heads", "head_dim", "d_model", "final_norm", "unembed") if k not in mapping]
    if missing:
        raise SystemExit(f"easyroutine export: the mapping lacks {', '.join(missing)}")
    vocab = vocab or (_text_config(config).vocab_size if config is not None else 64)
    ids, mask = sample_inputs(vocab, device)
    with_mask = _takes_mask(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            with _traceable_scatter():
                traced = torch.jit.trace(model, (ids, mask) if with_mask else (ids,), check_trace=False)
    worst = check_trace(traced, model, vocab, device, tolerance, with_mask)
    manifest = {
        "format": "easyroutine-manifest",
        "version": MANIFEST_VERSION,
        "hf_class": hf_class,
        "config": config.to_dict() if config is not None else None,
        "torch": torch.__version__,
        "inputs": ["input_ids", "attention_mask"] if with_mask else ["input_ids"],
        "architecture": mapping,
        "trace_check_max_abs_error": worst,
    }
    # strict JSON: a config's infinities (Falcon-H1's clamp bounds) are written as strings
    extra = {MANIFEST_NAME: json.dumps(_finite(manifest), default=str, allow_nan=False)}
    extra.update(tokenizer_files or {})
    torch.jit.save(traced, out, _extra_files=extra)
    return manifest


def export_pretrained(model_dir: str, out: str, attn: str = "eager", dtype: str = "float32", device: str = "cpu"):
    import torch
    import transformers

    # the export says what it did; transformers' progress bars and notes about the config are noise here
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = transformers.AutoConfig.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype=getattr(torch, dtype)).to(device).eval()
    tokenizer_files = {name: open(os.path.join(model_dir, name), encoding="utf-8").read() for name in TOKENIZER_FILES if os.path.exists(os.path.join(model_dir, name))}
    return export_model(model, config, out, attn=attn, tokenizer_files=tokenizer_files, device=device, tolerance=1e-4 if dtype == "float32" else 5e-2)


def export_model(model, config, out: str, attn: str = "eager", tokenizer_files: Optional[dict] = None, device: str = "cpu", tolerance: float = 1e-4):
    """Exports a loaded Hugging Face causal LM (an `AutoModelForCausalLM` in eval mode, attention
    implementation `attn`): its mapping found by data flow, traced, checked and saved."""
    patched = _patch_untraceable(model)
    wrapper = _wrapper_class()(model).eval()
    ids, mask = sample_inputs(_text_config(config).vocab_size, device)
    mapping = prefixed(find_mapping(model, config, {"input_ids": ids, "attention_mask": mask}), "model")
    mapping["attention_implementation"] = attn
    mapping["patched"] = patched
    return export(wrapper, out, mapping, config=config, tokenizer_files=tokenizer_files, hf_class=type(model).__name__, device=device, tolerance=tolerance)


def main(argv: List[str]):
    parser = argparse.ArgumentParser(prog="easyroutine export", description="Export a Hugging Face causal LM to TorchScript for easyroutine.")
    parser.add_argument("model_dir")
    parser.add_argument("out")
    parser.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args(argv)
    _require()
    if not os.path.isdir(args.model_dir):
        raise SystemExit(f"easyroutine export: '{args.model_dir}' is not a directory (expected a saved Hugging Face model)")
    manifest = export_pretrained(args.model_dir, args.out, args.attn, args.dtype, args.device)
    arch = manifest["architecture"]
    print(f"exported {manifest['hf_class']} ({len(arch['layers'])} layers, {arch['n_heads']} heads, {arch['n_kv_heads']} key/value) to {args.out}; trace checked to {manifest['trace_check_max_abs_error']:.2g}")


if __name__ == "__main__":
    main(sys.argv[1:])
