"""Tiny configs for any causal-LM class of the installed transformers: the class's default config with
every size shrunk (width 32, 2 layers, 4 heads of 8, 2 key/value heads, 4 experts, vocabulary 96),
passed to the config's constructor so that what it derives from them (layer types, head dims,
per-layer lists) is derived again. What a family needs beyond that is in FAMILY_OVERRIDES, with why.
"""
import inspect

import torch

VOCAB = 96
WIDTH = 32
HEADS = 4
HEAD_DIM = 8
LAYERS = 2

# by name, whatever the family calls it; a key a config does not have is not added
SIZES = {
    # width
    "hidden_size": WIDTH, "n_embd": WIDTH, "d_model": WIDTH, "dim": WIDTH, "embed_dim": WIDTH, "n_embed": WIDTH,
    "word_embed_proj_dim": WIDTH, "embedding_size": WIDTH, "hidden_dim": WIDTH,
    # depth
    "num_hidden_layers": LAYERS, "n_layer": LAYERS, "n_layers": LAYERS, "num_layers": LAYERS, "decoder_layers": LAYERS,
    "encoder_layers": LAYERS, "num_decoder_layers": LAYERS, "num_encoder_layers": LAYERS,
    # heads
    "num_attention_heads": HEADS, "n_head": HEADS, "n_heads": HEADS, "decoder_attention_heads": HEADS,
    "encoder_attention_heads": HEADS, "num_heads": HEADS, "num_key_value_heads": 2, "n_kv_heads": 2, "num_kv_heads": 2,
    "head_dim": HEAD_DIM, "attention_head_dim": HEAD_DIM, "kv_channels": HEAD_DIM, "d_head": HEAD_DIM, "d_kv": HEAD_DIM,
    # MLP
    "intermediate_size": 64, "n_inner": 64, "ffn_dim": 64, "decoder_ffn_dim": 64, "encoder_ffn_dim": 64, "d_ff": 64,
    "ffn_hidden_size": 64, "dff": 64, "mlp_dim": 64, "d_inner": 64, "inner_hidden_size": 64,
    # mixture of experts
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4, "num_experts_per_tok": 2,
    "moe_topk": 2, "moe_k": 2, "top_k": 2, "n_shared_experts": 1, "num_shared_experts": 1, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32, "expert_intermediate_size": 32, "first_k_dense_replace": 1, "n_group": 1,
    "topk_group": 1,
    # multi-head latent attention
    "q_lora_rank": 16, "kv_lora_rank": 16, "qk_rope_head_dim": 4, "qk_nope_head_dim": 4, "v_head_dim": HEAD_DIM,
    # vocabulary and positions
    "vocab_size": VOCAB, "n_positions": 128, "max_position_embeddings": 128, "n_ctx": 128, "max_seq_len": 128,
    "max_sequence_length": 128, "max_target_positions": 128, "max_source_positions": 128, "seq_length": 128,
    # state-space and recurrent parts of hybrids
    "mamba_d_state": 8, "mamba_n_heads": 4, "mamba_d_head": 16, "mamba_d_conv": 4, "mamba_expand": 2, "ssm_state_size": 8,
    "state_size": 8, "mamba_n_groups": 1, "n_groups": 1, "time_step_rank": 4, "conv_kernel": 4, "linear_num_key_heads": 2,
    "linear_num_value_heads": 4, "linear_key_head_dim": 8, "linear_value_head_dim": 8, "lru_width": WIDTH,
    "sliding_window": 64, "attention_window_size": 64, "rotary_dim": 4,
    # hybrids that place attention by period and offset (Jamba) or by index (Bamba)
    "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1,
    "attn_layer_indices": [1],
    # the second width or vocabulary of a few families (BLT's global model and hash embeddings, Gemma 4's
    # per-layer inputs, XLM's embeddings, LongCat-Flash's zero experts)
    "hidden_size_global": WIDTH, "encoder_hash_byte_group_vocab": VOCAB, "vocab_size_per_layer_input": VOCAB,
    "hidden_size_per_layer_input": 8, "global_head_dim": HEAD_DIM, "emb_dim": WIDTH, "zero_expert_num": 2,
    "expert_ffn_hidden_size": 32,
    # Inkling's sliding-window layers have heads of their own
    "swa_num_attention_heads": HEADS, "swa_num_key_value_heads": 2, "swa_head_dim": HEAD_DIM,
}

# the per-layer kind lists hybrids are built from
LAYER_KIND_LISTS = ("layer_types", "layers_block_type", "block_types")


def _token_ids_in_vocab(kwargs, defaults):
    """Special token ids of the default config that the tiny vocabulary would not hold."""
    for key, value in defaults.items():
        if key.endswith("token_id") and isinstance(value, int) and value >= VOCAB:
            kwargs[key] = VOCAB - 1 - (hash(key) % 8)
        if key.endswith("token_id") and isinstance(value, list):
            kwargs[key] = [v if v < VOCAB else VOCAB - 1 for v in value]


def _layer_lists(kwargs, defaults):
    """Per-layer kind lists of the default config cut to LAYERS entries: an attention layer first
    where the default has one, then another kind (a hybrid keeps both its attention and its other
    layers)."""
    for key in LAYER_KIND_LISTS:
        value = defaults.get(key)
        if not isinstance(value, list) or not value or key in kwargs:
            continue
        kinds = list(dict.fromkeys(value))
        attention = [k for k in kinds if isinstance(k, str) and "attention" in k and "linear" not in k]
        chosen = attention[:1] + [k for k in kinds if k not in attention[:1]]
        kwargs[key] = (chosen * LAYERS)[:LAYERS]


def _latent_attention(kwargs, defaults):
    """Multi-head latent attention (DeepSeek V2/V3): RoPE runs over qk_rope_head_dim, which its
    rotary embedding reads as head_dim; its keys and values have every head (repeating them by
    heads / key-value heads would double them)."""
    if "qk_rope_head_dim" in defaults:
        kwargs["head_dim"] = kwargs["qk_rope_head_dim"]
        if "num_key_value_heads" in kwargs:
            kwargs["num_key_value_heads"] = kwargs.get("num_attention_heads", HEADS)
        if "qk_head_dim" in defaults:
            kwargs["qk_head_dim"] = kwargs["qk_rope_head_dim"] + kwargs["qk_nope_head_dim"]


def tiny_config(config_class, overrides=None):
    """`config_class` shrunk; a composite config (a text and a vision model) has every part shrunk."""
    defaults = config_class().to_dict()
    aliases = getattr(config_class, "attribute_map", {}) or {}
    accepted = set(inspect.signature(config_class.__init__).parameters)
    kwargs = {}
    for key, value in SIZES.items():
        if key in defaults or key in accepted:
            kwargs[aliases.get(key, key) if aliases.get(key, key) in defaults or aliases.get(key, key) in accepted else key] = value
    _token_ids_in_vocab(kwargs, defaults)
    _layer_lists(kwargs, defaults)
    _latent_attention(kwargs, defaults)
    for name, sub_class in (getattr(config_class, "sub_configs", None) or {}).items():
        if isinstance(sub_class, type):
            # the object, not its to_dict(): a strict constructor refuses the dict's bookkeeping keys
            kwargs[name] = tiny_config(sub_class)
    kwargs.update(overrides or {})
    return config_class(**kwargs)


def parameter_count(model_class, config):
    with torch.device("meta"):
        model = model_class(config)
    return sum(p.numel() for p in model.parameters())


# what a family needs beyond the shrunk sizes, by model type
FAMILY_OVERRIDES = {
    # one attention kind for both layers: GPT-Neo checks that its pattern covers every layer
    "gpt_neo": {"attention_types": [[["global", "local"], 1]]},
    # the Mamba heads must span hidden_size * expand (64)
    "mamba2": {"head_dim": 16},
    "falcon_h1": {"mamba_d_ssm": 64},
    # ZAYA routes each token to one expert only
    "zaya": {"num_experts_per_tok": 1},
    # xLSTM's block width is embedding_dim
    "xlstm": {"embedding_dim": WIDTH, "num_blocks": LAYERS},
    # ReformerModelWithLMHead is causal only as a decoder
    "reformer": {"is_decoder": True, "axial_pos_embds_dim": [16, 16]},
    # RoCBert's pronunciation and glyph embeddings
    "roc_bert": {"pronunciation_embed_dim": 16, "pronunciation_vocab_size": 32, "shape_embed_dim": 16, "shape_vocab_size": 32},
}
