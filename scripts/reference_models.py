"""The nn.Module definitions that the test fixtures (make_fixtures.py), the bundled model
(train_induction.py) and the Python side of the bench share: GPT-2-like (nanoGPT layout) and
Llama-like transformers, the small structural models of the engine's tests, and the induction model
with its task. Importing this module has no side effects.
"""
import math
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


class StateTupleBlock(GPTBlock):
    """A GPT block that returns states before the residual stream, as xLSTM's blocks do; one state
    has the residual's shape, so only data flow tells them apart."""

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x.mean(-1), 0.5 * x, x


class StateTupleGPT(nn.Module):
    def __init__(self, vocab=64, d_model=32, n_heads=4, n_layers=2, ctx=16):
        super().__init__()
        self.transformer = GPTTransformer(vocab, d_model, n_heads, n_layers, ctx, StateTupleBlock)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = self.transformer
        pos = torch.arange(0, input_ids.size(1), dtype=torch.long, device=input_ids.device)
        x = t.wte(input_ids) + t.wpe(pos)
        carried = torch.zeros_like(input_ids, dtype=torch.float32)
        for block in t.h:
            # the states reach the logits (as a recurrence's would), so the trace keeps the tuple
            state, half, x = block(x)
            carried = carried + state + half.mean(-1)
        return self.lm_head(t.ln_f(x)) + 0.01 * carried.unsqueeze(-1)


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


class LastLogitsGPT(GPT):
    """A GPT that returns the logits of the last position only ([batch, 1, vocab]), as generation exports do."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return super().forward(idx)[:, -1:, :]


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


class AttentionStack(nn.Module):
    """Embeddings, attention layers each added to the residual stream, and an unembedding; `layers`
    builds the layers (called between the two, so parameters are drawn in that order)."""

    def __init__(self, vocab: int, d_model: int, layers):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList(layers())
        self.head = nn.Linear(d_model, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for layer in self.layers:
            h = h + layer(h)
        return self.head(h)


class SdpaModel(AttentionStack):
    MODES = ("causal", "bool", "additive", "gqa")

    def __init__(self, vocab=48, d_model=32, n_heads=4, ctx=12):
        super().__init__(vocab, d_model, lambda: [SdpaAttention(d_model, n_heads, 2 if m == "gqa" else n_heads, m, ctx) for m in self.MODES])


# ---------------------------------------------------------------- the bundled induction model and its task
INDUCTION_CONFIG = dict(vocab=64, d_model=64, n_heads=4, n_layers=2, half=16, bos=0)
INDUCTION_CONFIG["ctx"] = 2 * INDUCTION_CONFIG["half"] + 1


class AttnOnlyBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ctx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = GPTAttention(d_model, n_heads, ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.ln_1(x))


def induction_model() -> nn.Module:
    """The GPT-2 layout of the test fixtures (transformer.h.{i}.attn, lm_head) without MLPs."""
    return GPT(**{k: INDUCTION_CONFIG[k] for k in ("vocab", "d_model", "n_heads", "n_layers", "ctx")}, block=AttnOnlyBlock)


def repeated_batch(generator: torch.Generator, batch: int):
    """[batch, 2 * half + 1]: BOS, half random tokens (never BOS), the same tokens again."""
    half = INDUCTION_CONFIG["half"]
    tokens = torch.randint(1, INDUCTION_CONFIG["vocab"], (batch, half), generator=generator)
    bos = torch.full((batch, 1), INDUCTION_CONFIG["bos"], dtype=torch.long)
    return torch.cat([bos, tokens, tokens], dim=1)


def repeated_half_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss where the next token is in the repeated half (predictable by induction)."""
    half = INDUCTION_CONFIG["half"]
    predictions = logits[:, half + 1 : -1]  # positions whose next token is a repeat
    targets = ids[:, half + 2 :]
    return F.cross_entropy(predictions.reshape(-1, predictions.size(-1)), targets.reshape(-1))


def load_induction_model(path: str) -> nn.Module:
    """The nn.Module with the weights of a saved TorchScript file (for references and benchmarks)."""
    model = induction_model()
    model.load_state_dict(torch.jit.load(path).state_dict())
    return model.eval()


# ---------------------------------------------------------------- eager attention as other families write it
class VariantAttention(nn.Module):
    """Eager attention in the forms the engine must recognise (issue 17's sweep found each in a family):

        sinks          softmax(cat([scores, sinks]) - max) -> slice -> dropout -> matmul (gpt-oss)
        masked_fill    softmax -> masked_fill(masked, 0) -> matmul (CPM-Ant)
        bmm_flat       bmm on [batch * heads, ...], the softmax on [batch * heads, q, k] (MVP, TrOCR),
                       the heads' output merged without a [batch, heads, q, d] view
        bmm_view_view  softmax on [batch * heads, q, k] -> view [batch, heads, q, k] -> view -> bmm (XGLM)
        einsum_xlnet   einsum("ibnd,jbnd->bnij"), softmax over dim 3, einsum("bnij,jbnd->ibnd") (XLNet)
        einsum_heads   einsum("bnid,bnjd->bnij"), softmax(-1), einsum("bnij,bnjd->bnid") (ProphetNet)

    `compute(x, record, edit)` is the forward; `record` (a dict) receives each site in the documented
    [batch, heads, ...] layout and `edit` changes the [batch, heads, q, k] pattern, for the references.
    """

    KINDS = ("sinks", "masked_fill", "bmm_flat", "bmm_view_view", "einsum_xlnet", "einsum_heads")
    # the sites the engine offers for each kind (an einsum's layout hides the rest)
    OFFERED = {
        "sinks": ("queries", "keys", "values", "scores", "pattern", "head_output"),
        "masked_fill": ("queries", "keys", "values", "scores", "pattern", "head_output"),
        "bmm_flat": ("queries", "keys", "values", "scores", "pattern", "head_output"),
        "bmm_view_view": ("queries", "keys", "values", "scores", "pattern", "head_output"),
        "einsum_xlnet": ("scores", "pattern"),
        "einsum_heads": ("values", "scores", "pattern", "head_output"),
    }

    def __init__(self, kind: str, d_model: int, n_heads: int, ctx: int):
        super().__init__()
        self.kind, self.n_heads, self.head_dim = kind, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.o_proj = nn.Linear(d_model, d_model)
        self.sinks = nn.Parameter(torch.randn(n_heads))
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("causal", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compute(x)

    def compute(self, x: torch.Tensor, record=None, edit=None) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.n_heads, self.head_dim
        scale = 1.0 / math.sqrt(D)
        keep = self.causal[:T, :T]
        additive = torch.zeros(T, T).masked_fill(~keep, float("-inf"))
        record = {} if record is None else record
        edit = edit or (lambda p: p)
        if self.kind.startswith("einsum_xlnet"):
            q = self.q_proj(x).view(B, T, H, D).transpose(0, 1)  # [T, B, H, D]
            k = self.k_proj(x).view(B, T, H, D).transpose(0, 1)
            v = self.v_proj(x).view(B, T, H, D).transpose(0, 1)
            scores = torch.einsum("ibnd,jbnd->bnij", q, k) * scale + additive
            record["scores"] = scores
            pattern = edit(self.dropout(F.softmax(scores, dim=3)))
            record["pattern"] = pattern
            vec = torch.einsum("bnij,jbnd->ibnd", pattern, v)
            return self.o_proj(vec.reshape(T, B, C).transpose(0, 1))
        q = self.q_proj(x).view(B, T, H, D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, H, D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, H, D).transpose(1, 2)
        record.update(queries=q, keys=k, values=v)
        if self.kind == "einsum_heads":
            scores = torch.einsum("bnid,bnjd->bnij", q, k) * scale + additive
            record["scores"] = scores
            pattern = edit(self.dropout(F.softmax(scores, dim=-1)))
            record["pattern"] = pattern
            out = torch.einsum("bnij,bnjd->bnid", pattern, v)
            record["head_output"] = out
        elif self.kind.startswith("bmm"):
            q3, k3, v3 = (t.contiguous().view(B * H, T, D) for t in (q, k, v))
            scores = torch.bmm(q3, k3.transpose(1, 2)) * scale
            scores = (scores.view(B, H, T, T) + additive).view(B * H, T, T)
            record["scores"] = scores.view(B, H, T, T)
            probs = F.softmax(scores, dim=-1)
            if self.kind == "bmm_view_view":
                pattern = edit(probs.view(B, H, T, T))
                record["pattern"] = pattern
                flat = self.dropout(pattern.view(B * H, T, T))
            else:
                flat = edit(self.dropout(probs).view(B, H, T, T)).reshape(B * H, T, T)
                record["pattern"] = flat.view(B, H, T, T)
            out3 = torch.bmm(flat, v3)
            record["head_output"] = out3.view(B, H, T, D)
            if self.kind == "bmm_flat":
                # merged straight from [batch * heads, q, d]: no [batch, heads, q, d] view to tap
                return self.o_proj(out3.transpose(0, 1).reshape(T, B, C).transpose(0, 1))
            out = out3.view(B, H, T, D)
        else:
            scores = q @ k.transpose(-2, -1) * scale
            if self.kind == "sinks":
                scores = scores + additive
                record["scores"] = scores
                combined = torch.cat([scores, self.sinks.reshape(1, -1, 1, 1).expand(B, -1, T, 1)], dim=-1)
                combined = combined - combined.max(dim=-1, keepdim=True).values
                pattern = edit(self.dropout(F.softmax(combined, dim=-1)[..., :-1]))
            else:
                scores = scores.masked_fill(~keep, float("-inf"))
                record["scores"] = scores
                pattern = edit(F.softmax(scores, dim=-1).masked_fill(~keep, 0.0))
            record["pattern"] = pattern
            out = torch.matmul(pattern, v)
            record["head_output"] = out
        return self.o_proj(out.transpose(1, 2).reshape(B, T, C))


class VariantModel(AttentionStack):
    """One layer of each VariantAttention kind, on a residual stream."""

    def __init__(self, vocab=48, d_model=32, n_heads=4, ctx=12):
        super().__init__(vocab, d_model, lambda: [VariantAttention(kind, d_model, n_heads, ctx) for kind in VariantAttention.KINDS])
