"""Builds the test fixtures from seeded PyTorch modules, with reference outputs computed on the
original nn.Module (never on the exported file).

    python3 scripts/make_fixtures.py OUT_DIR             # test fixtures (not committed)
    python3 scripts/make_fixtures.py --bundled models/   # the small model the README's demo runs

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
    def __init__(self, vocab: int, d_model: int, n_heads: int, n_layers: int, ctx: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, d_model)
        self.wpe = nn.Embedding(ctx, d_model)
        self.h = nn.ModuleList([GPTBlock(d_model, n_heads, ctx) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(d_model)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT(nn.Module):
    def __init__(self, vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16):
        super().__init__()
        self.transformer = GPTTransformer(vocab, d_model, n_heads, n_layers, ctx)
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


def build_bundled(out_dir: str):
    torch.manual_seed(0)
    model = GPT(vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16).eval()
    example = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example), os.path.join(out_dir, "tiny-gpt.pt"))


def main(argv: List[str]):
    # Shapes are fixed per fixture, so the tracer's notes on Python numbers are expected.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    if argv[:1] == ["--bundled"]:
        os.makedirs(argv[1], exist_ok=True)
        build_bundled(argv[1])
        return
    out_dir = argv[0]
    os.makedirs(out_dir, exist_ok=True)
    for name in FAMILIES:
        build_family(name, out_dir)
    build_misc(out_dir)
    with open(os.path.join(out_dir, "STAMP"), "w") as f:
        f.write(torch.__version__ + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
