"""Builds the model-family fixtures: Hugging Face causal LMs of many families from tiny seeded
configs, exported by easyroutine's exporter (python/easyroutine_export.py) in eager and SDPA
attention, with references computed by PyTorch's own hooks on the original nn.Module in the same
attention mode.

    python3 scripts/make_hf_fixtures.py OUT_DIR [FAMILY ...]

Needs torch and transformers (pip's torch 2.13 and transformers 5.17/5.18 are what CI uses). Weights
are re-drawn with std 0.15 (norm weights 1 + 0.15 N(0, 1)) so that attention patterns are far from
uniform. OUT_DIR/<family>-<attn>.pt is the export and OUT_DIR/<family>-<attn>.json its references,
from the nn.Module loaded with that attention implementation (an SDPA module gives no patterns:
its references take the eager module's where both modules' logits agree, as they do unless the
family's SDPA path drops something, e.g. Gemma 2's soft-capping):

- for a full batch: per layer the block's input and output, the attention's output, the MLP's output,
  the input of the MLP's norm (resid_mid), W_O's output, every head's pattern; the logits; and the
  logits with layer 0's head 1 zero-ablated (its head output zeroed before W_O, which is what a zero
  pattern gives);
- OUT_DIR/llama-model: the saved Hugging Face model with a tokenizer (a BPE over words with
  Metaspace, as Llama's, trained here on a small corpus; BOS added, pad token 't2'-like, left
  padding), for `easyroutine export` end to end; llama-*.json then also holds `text`: prompts, the
  ids and mask Python's tokenizer gives them as a padded batch, its token strings, the logits, and 4
  greedily generated tokens per prompt (a loop of full forwards with the mask); and `patching`: the
  residual and head sweeps by hand and a gradient at block 0's output (patching_references);
- for a left-padded batch (the same rows, row 1 with two pad tokens first): the logits and each
  block's output.
"""
import json
import os
import sys
import tempfile
import warnings

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import easyroutine_export as exporter  # noqa: E402

BASE = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)

FAMILIES = {
    "gpt2": (transformers.GPT2Config, dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, n_inner=64)),
    "llama": (transformers.LlamaConfig, dict(num_key_value_heads=2)),
    "mistral": (transformers.MistralConfig, dict(num_key_value_heads=2)),
    "qwen2": (transformers.Qwen2Config, dict(num_key_value_heads=2)),
    "gemma2": (transformers.Gemma2Config, dict(num_key_value_heads=2, head_dim=8)),
    "phi3": (transformers.Phi3Config, dict(num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    "gpt_neox": (transformers.GPTNeoXConfig, dict()),
    "opt": (transformers.OPTConfig, dict(word_embed_proj_dim=32, ffn_dim=64)),
    "falcon": (transformers.FalconConfig, dict()),
    "bloom": (transformers.BloomConfig, dict(n_head=4)),
}

SEED = 1234
IDS = [[5, 17, 3, 42, 8, 23, 11], [9, 31, 2, 14, 60, 7, 19]]
PADDED_ROW = 1
PAD = 2
ABLATED = (0, 1)  # layer, head
CLI_FAMILY = "llama"
CORPUS = ["the cat sat on the mat", "a dog ran far away from the cat", "the bird sang a song", "we ran and sat and sang"] * 4
PROMPTS = ["the cat sat", "a dog ran far away", "we sang"]


def write_tokenizer(directory):
    """A real tokenizer.json and tokenizer_config.json in `directory`: BPE over Metaspace words (as
    Llama's), vocabulary 64 to fit the configs, BOS prepended, '<pad>' for left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=64, special_tokens=["<unk>", "<s>", "<pad>"]))
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", unk_token="<unk>", pad_token="<pad>", padding_side="left")
    fast.save_pretrained(directory)
    return fast


def text_references(model, tokenizer):
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    # greedy generation as a loop of full forwards on the left-padded batch and its mask (what
    # HookedModel.generate does; HF's generate would also shift position ids by the padding)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        for _ in range(4):
            step = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids, mask = torch.cat([ids, step], 1), torch.cat([mask, torch.ones_like(step)], 1)
    return {
        "generated": ids[:, batch["input_ids"].shape[1]:].tolist(),
        "prompts": PROMPTS,
        "input_ids": batch["input_ids"].tolist(),
        "attention_mask": batch["attention_mask"].tolist(),
        "tokens": [tokenizer.convert_ids_to_tokens(tokenizer(p)["input_ids"]) for p in PROMPTS],
        "logits": encode(logits),
    }


def redraw(model):
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator) * 0.15
            p.copy_(1 + noise if p.dim() == 1 and "norm" in name.lower() and name.endswith("weight") else noise)


def encode(t):
    return {"shape": list(t.shape), "values": t.detach().to(torch.float32).reshape(-1).tolist()}


def module(model, path):
    return model.get_submodule(path) if path else model


def references(model, eager, mapping):
    """PyTorch's hooks on the nn.Module (paths in `mapping` are relative to `model`); the patterns
    from `eager`, the same weights with eager attention."""
    ids = torch.tensor(IDS)
    full = torch.ones_like(ids)
    args_batch = [ids.shape[0]]
    records = {}
    handles = []

    def record(name, which):
        def hook(mod, args, kwargs, output):
            if which == "input":
                value = kwargs.get("hidden_states", None)
                if value is None:
                    value = exporter._first_tensor(args)
            else:
                value = exporter._first_tensor(output)
            if value.dim() == 2:  # tokens flattened to [batch * seq, d] (OPT's MLP)
                value = value.reshape(args_batch[0], -1, value.shape[-1])
            records.setdefault(name, value.detach().clone())

        return hook

    for i, layer in enumerate(mapping["layers"]):
        handles.append(module(model, layer["block"]).register_forward_hook(record(f"resid_in_{i}", "input"), with_kwargs=True))
        handles.append(module(model, layer["block"]).register_forward_hook(record(f"resid_out_{i}", "output"), with_kwargs=True))
        handles.append(module(model, layer["attention"]).register_forward_hook(record(f"attn_out_{i}", "output"), with_kwargs=True))
        handles.append(module(model, layer["projections"]["output"]).register_forward_hook(record(f"o_proj_out_{i}", "output"), with_kwargs=True))
        if layer["mlp"] or layer["mlp_out"]:
            handles.append(module(model, layer["mlp"] or layer["mlp_out"]).register_forward_hook(record(f"mlp_out_{i}", "output"), with_kwargs=True))
        if layer["mlp_norm"] and not layer["parallel"]:
            handles.append(module(model, layer["mlp_norm"]).register_forward_hook(record(f"resid_mid_{i}", "input"), with_kwargs=True))
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=full, use_cache=False)
        patterns = eager(input_ids=ids, attention_mask=full, output_attentions=True, use_cache=False)
    for h in handles:
        h.remove()
    result = {k: encode(v) for k, v in records.items()}
    if torch.allclose(patterns.logits, out.logits, atol=1e-5):
        for i, pattern in enumerate(patterns.attentions):
            result[f"pattern_{i}"] = encode(pattern)
    result["logits"] = encode(out.logits)

    layer, head = ABLATED
    head_dim = mapping["head_dim"]
    o_proj = module(model, mapping["layers"][layer]["projections"]["output"])

    def zero_head(mod, args):
        x = args[0].clone()
        x[..., head * head_dim : (head + 1) * head_dim] = 0
        return (x,)

    handle = o_proj.register_forward_pre_hook(zero_head)
    with torch.no_grad():
        result["ablated_logits"] = encode(model(input_ids=ids, attention_mask=full, use_cache=False).logits)
    handle.remove()

    padded_ids = ids.clone()
    padded_ids[PADDED_ROW, :PAD] = 0
    mask = full.clone()
    mask[PADDED_ROW, :PAD] = 0
    records.clear()
    handles = [module(model, l["block"]).register_forward_hook(record(f"resid_out_{i}", "output"), with_kwargs=True) for i, l in enumerate(mapping["layers"])]
    with torch.no_grad():
        padded = model(input_ids=padded_ids, attention_mask=mask, use_cache=False).logits
    for h in handles:
        h.remove()
    result["padded"] = {"input_ids": padded_ids.tolist(), "attention_mask": mask.tolist(), "logits": encode(padded), **{k: encode(v) for k, v in records.items()}}
    return result


CORRUPTED = [[5, 17, 3, 42, 8, 23, 11], [9, 31, 2, 14, 60, 7, 19]]
CORRUPTED[0][3], CORRUPTED[1][3] = 30, 50
METRIC_TOKENS = (5, 17)  # logit difference correct - wrong at the last position


def patching_references(model, mapping):
    """On the CLI family: the residual sweep (each block's input at one position) and the head sweep
    (one head's slice of W_O's input at every position) done by hand, the metric the logit
    difference at the last position averaged over rows; and the gradient of logits[0, -1, 5] with
    respect to block 0's output."""
    clean, corrupted = torch.tensor(IDS), torch.tensor(CORRUPTED)
    full = torch.ones_like(clean)
    layers = [module(model, l["block"]) for l in mapping["layers"]]
    o_projs = [module(model, l["projections"]["output"]) for l in mapping["layers"]]
    head_dim = mapping["head_dim"]
    correct, wrong = METRIC_TOKENS

    def run(ids):
        return model(input_ids=ids, attention_mask=full, use_cache=False).logits

    def metric(logits):
        return (logits[:, -1, correct] - logits[:, -1, wrong]).mean().item()

    def hidden(args, kwargs):
        return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    def with_hidden(args, kwargs, value):
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": value}
        return (value, *args[1:]), kwargs

    saved = {}
    handles = [layer.register_forward_pre_hook(lambda m, a, k, i=i: saved.__setitem__(("in", i), hidden(a, k).clone()), with_kwargs=True) for i, layer in enumerate(layers)]
    handles += [o.register_forward_pre_hook(lambda m, a, i=i: saved.__setitem__(("o", i), a[0].clone())) for i, o in enumerate(o_projs)]
    with torch.no_grad():
        clean_metric = metric(run(clean))
        for h in handles:
            h.remove()
        corrupted_metric = metric(run(corrupted))

        def patched(hook_module, hook):
            handle = hook_module.register_forward_pre_hook(hook, with_kwargs=True)
            value = metric(run(corrupted))
            handle.remove()
            return value

        def resid_hook(i, p):
            def hook(m, a, k):
                x = hidden(a, k).clone()
                x[:, p] = saved[("in", i)][:, p]
                return with_hidden(a, k, x)
            return hook

        def head_hook(i, h):
            def hook(m, a, k):
                x = a[0].clone()
                x[..., h * head_dim : (h + 1) * head_dim] = saved[("o", i)][..., h * head_dim : (h + 1) * head_dim]
                return (x, *a[1:]), k
            return hook

        resid = [[patched(layer, resid_hook(i, p)) for p in range(clean.shape[1])] for i, layer in enumerate(layers)]
        heads = [[patched(o, head_hook(i, h)) for h in range(mapping["n_heads"])] for i, o in enumerate(o_projs)]

    kept = {}

    def keep(m, a, out):
        value = out[0] if isinstance(out, tuple) else out
        value.retain_grad()
        kept["value"] = value

    handle = layers[0].register_forward_hook(keep)
    logits = run(clean[:1])
    handle.remove()
    logits[0, -1, 5].backward()
    model.zero_grad(set_to_none=True)
    return {
        "clean": IDS,
        "corrupted": CORRUPTED,
        "tokens": list(METRIC_TOKENS),
        "clean_metric": clean_metric,
        "corrupted_metric": corrupted_metric,
        "resid_in": resid,
        "heads": heads,
        "resid_out_0_gradient": encode(kept["value"].grad),
    }


def build(family, out_dir):
    config_class, extra = FAMILIES[family]
    config = config_class(**{**BASE, **extra})
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    redraw(model)
    sample = {"input_ids": torch.tensor(IDS), "attention_mask": torch.ones(len(IDS), len(IDS[0]), dtype=torch.long)}
    mapping = exporter.find_mapping(model, config, sample)
    built = []
    with tempfile.TemporaryDirectory() as scratch:
        # one family's saved model stays, for the command line's export test
        directory = os.path.join(out_dir, f"{family}-model") if family == CLI_FAMILY else scratch
        model.save_pretrained(directory)
        # the tokenizer files beside the weights, which the exporter copies into the archive
        tokenizer = write_tokenizer(directory) if family == CLI_FAMILY else None
        for attn in ("eager", "sdpa"):
            try:
                manifest = exporter.export_pretrained(directory, os.path.join(out_dir, f"{family}-{attn}.pt"), attn=attn)
            except (ValueError, NotImplementedError) as error:
                if attn == "eager":
                    raise
                print(f"  {family}: no {attn} export ({str(error).splitlines()[0][:100]})")
                continue
            built.append(attn)
            module = transformers.AutoModelForCausalLM.from_pretrained(directory, attn_implementation=attn).eval()
            refs = references(module, model, mapping)
            if tokenizer is not None:
                refs["text"] = text_references(module, tokenizer)
                refs["patching"] = patching_references(module, mapping)
            refs.update({"family": family, "attention": attn, "hf_class": type(model).__name__, "input_ids": IDS, "ablated": list(ABLATED), "mapping": mapping, "manifest_architecture": manifest["architecture"]})
            with open(os.path.join(out_dir, f"{family}-{attn}.json"), "w") as f:
                json.dump(refs, f)
    print(f"  {family}: {type(model).__name__}, {', '.join(built)}")


def main(argv):
    warnings.filterwarnings("ignore")
    out_dir = argv[0]
    os.makedirs(out_dir, exist_ok=True)
    families = argv[1:] or list(FAMILIES)
    for family in families:
        build(family, out_dir)
    with open(os.path.join(out_dir, "STAMP"), "w") as f:
        f.write(f"{torch.__version__} {transformers.__version__}")


if __name__ == "__main__":
    main(sys.argv[1:])
