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
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- GPT-2-like (nanoGPT layout)
class GPTAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ctx: int):
        super().__init__()
        self.n_heads = n_heads
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.register_buffer("bias", torch.tril(torch.ones(ctx, ctx)).view(1, 1, ctx, ctx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_heads
        q = q.view(B, T, self.n_heads, hs).transpose(1, 2)
        k = k.view(B, T, self.n_heads, hs).transpose(1, 2)
        v = v.view(B, T, self.n_heads, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class GPTMLP(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class GPTBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ctx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = GPTAttention(d_model, n_heads, ctx)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = GPTMLP(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPTTransformer(nn.Module):
    def __init__(self, vocab: int, d_model: int, n_heads: int, n_layers: int, ctx: int, block=GPTBlock):
        super().__init__()
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(ctx, d_model)
        self.h = nn.ModuleList([block(d_model, n_heads, ctx) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT(nn.Module):
    """`block` builds each layer (GPTBlock; scripts/train_induction.py passes an attention-only one)."""

    def __init__(self, vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16, block=GPTBlock):
        super().__init__()
        self.transformer = GPTTransformer(vocab, d_model, n_heads, n_layers, ctx, block)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.transformer(idx))


# ---------------------------------------------------------------- Llama-like (HF layout)
class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, ctx: int):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        freqs = torch.outer(torch.arange(ctx).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos())
        self.register_buffer("sin_cached", emb.sin())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.size()
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos = self.cos_cached[:T]
        sin = self.sin_cached[:T]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.n_heads // self.n_kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        mask = torch.full((T, T), float("-inf"), device=x.device).triu(1)
        scores = scores + mask
        probs = F.softmax(scores, dim=-1)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous().view(B, T, -1)
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, ctx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(d_model)
        self.self_attn = LlamaAttention(d_model, n_heads, n_kv_heads, ctx)
        self.post_attention_layernorm = RMSNorm(d_model)
        self.mlp = LlamaMLP(d_model, 2 * d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class LlamaModel(nn.Module):
    def __init__(self, vocab: int, d_model: int, n_heads: int, n_kv_heads: int, n_layers: int, ctx: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList([LlamaDecoderLayer(d_model, n_heads, n_kv_heads, ctx) for _ in range(n_layers)])
        self.norm = RMSNorm(d_model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class Llama(nn.Module):
    def __init__(self, vocab=64, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, ctx=16):
        super().__init__()
        self.model = LlamaModel(vocab, d_model, n_heads, n_kv_heads, n_layers, ctx)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model(input_ids))


# ---------------------------------------------------------------- structured inputs and outputs
class Structured(nn.Module):
    """Every argument and return kind the JS bridge converts."""

    def forward(
        self,
        x: torch.Tensor,
        pair: Tuple[torch.Tensor, torch.Tensor],
        items: List[torch.Tensor],
        scale: float = 2.0,
        mask: Optional[torch.Tensor] = None,
        named: Optional[Dict[str, torch.Tensor]] = None,
        label: str = "none",
        count: int = 1,
        flag: bool = False,
    ) -> Tuple[torch.Tensor, List[torch.Tensor], Dict[str, torch.Tensor], int, str, bool, Optional[torch.Tensor]]:
        total = x.clone()
        for item in items:
            total = total + item
        masked = x if mask is None else x * mask
        named_sum = torch.zeros_like(x)
        if named is not None:
            for key in named:
                named_sum = named_sum + named[key]
        out: Dict[str, torch.Tensor] = {"total": total, "masked": masked, "named": named_sum}
        return x * scale, [pair[0] + pair[1], pair[0] - pair[1]], out, count * len(items), label, not flag, mask


class IntKeyed(nn.Module):
    def forward(self, x: torch.Tensor) -> Dict[int, torch.Tensor]:
        return {0: x, 1: x + 1}


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.lin(x)
        return y, y.relu()


class WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(p=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x)


# ---------------------------------------------------------------- scripted control flow
class BranchyAttention(nn.Module):
    """Plain (non-Final) attributes drive branches, and the softmax sits inside one of them; both
    instances share one scripted type and graph, so only per-instance folding tells them apart."""

    def __init__(self, d_model: int, n_heads: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        hs = C // self.n_heads
        q = q.view(B, T, self.n_heads, hs).transpose(1, 2)
        k = k.view(B, T, self.n_heads, hs).transpose(1, 2)
        v = v.view(B, T, self.n_heads, hs).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
        if self.causal:
            keep = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(keep.logical_not(), float("-inf"))
            probs = scores.softmax(-1)
        else:
            probs = scores.softmax(-1)
        if self.training:
            probs = F.dropout(probs, 0.1)
        return self.out((probs @ v).transpose(1, 2).reshape(B, T, C))


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(32, 16)
        self.blocks = nn.ModuleList([BranchyAttention(16, 2, True), BranchyAttention(16, 2, False)])
        self.head = nn.Linear(16, 32)

    def forward(self, ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        h = self.embed(ids)
        for block in self.blocks:
            h = h + block(h)
        return {"logits": self.head(h), "hidden": h}


# ---------------------------------------------------------------- fused attention (torch >= 2.5)
class SdpaAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, mode: str, ctx: int):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.mode = n_heads, n_kv_heads, mode
        self.head_dim = d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim)
        self.o_proj = nn.Linear(d_model, d_model)
        g = torch.Generator().manual_seed(99)
        self.register_buffer("bool_mask", (torch.rand(ctx, ctx, generator=g) > 0.4) | torch.eye(ctx, dtype=torch.bool))
        self.register_buffer("add_mask", torch.randn(ctx, ctx, generator=g))

    def qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def masks(self, T: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.bool_mask[:T, :T], self.add_mask[:T, :T]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        bool_mask, add_mask = self.masks(T)
        if self.mode == "causal":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.mode == "bool":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask)
        elif self.mode == "additive":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=add_mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))

    def internals(self, x: torch.Tensor, edit=None):
        """The same attention written out: what the hook points must see."""
        B, T, C = x.shape
        q, k, v = self.qkv(x)
        bool_mask, add_mask = self.masks(T)
        groups = self.n_heads // self.n_kv_heads
        kr, vr = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        scores = q @ kr.transpose(-2, -1) / math.sqrt(self.head_dim)
        if self.mode in ("causal", "gqa"):
            scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        elif self.mode == "bool":
            scores = scores.masked_fill(~bool_mask, float("-inf"))
        else:
            scores = scores + add_mask
        pattern = scores.softmax(-1)
        if edit is not None:
            pattern = edit(pattern)
        head_output = pattern @ vr
        out = self.o_proj(head_output.transpose(1, 2).reshape(B, T, C))
        return dict(queries=q, keys=k, values=v, scores=scores, pattern=pattern, head_output=head_output), out


class SdpaModel(nn.Module):
    MODES = ("causal", "bool", "additive", "gqa")

    def __init__(self, vocab=48, d_model=32, n_heads=4, ctx=12):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList([SdpaAttention(d_model, n_heads, 2 if m == "gqa" else n_heads, m, ctx) for m in self.MODES])
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for layer in self.layers:
            h = h + layer(h)
        return self.head(h)


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


def build_induction(out_dir: str):
    """References for the demo's study on the bundled model (models/induction-2l.pt), computed on its
    nn.Module with PyTorch's hooks: each head's pattern, induction and previous-token scores, and the
    repeated-half loss before and after zero-ablating heads."""
    import train_induction as ti

    bundled = os.path.join(os.path.dirname(__file__), "..", "models", "induction-2l.pt")
    model = ti.load(bundled)
    half, layers, heads = ti.CONFIG["half"], ti.CONFIG["n_layers"], ti.CONFIG["n_heads"]
    ids = ti.repeated_batch(torch.Generator().manual_seed(3), 4)
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
        return ti.repeated_half_loss(out, ids).item()

    losses = {"none": loss_without([]), "L1H1": loss_without([(1, 1)]), "L0H0": loss_without([(0, 0)])}
    with open(os.path.join(out_dir, "induction.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "half": half, "patterns": {f"L{i}": encode(patterns[i]) for i in range(layers)}, "scores": scores, "losses": losses, "logits": encode(logits)}, f)


def build_bundled(out_dir: str):
    torch.manual_seed(0)
    model = GPT(vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16).eval()
    example = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), os.path.join(out_dir, "tiny-gpt.pt"))


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
    build_branchy(out_dir)
    build_induction(out_dir)
    if hasattr(F, "scaled_dot_product_attention") and "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or ""):
        build_sdpa(out_dir)
    with open(os.path.join(out_dir, "STAMP"), "w") as f:
        f.write(torch.__version__ + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
