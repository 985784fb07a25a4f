"""The Python half of `npm run compat`: every class of the installed transformers' causal-LM mapping,
from a tiny seeded config (tiny_config.py), through the stages a user's model goes through:

    config     a tiny config of the family's defaults
    build      the nn.Module, eager attention, weights re-drawn as the family fixtures' (seed 1234)
    forward    a forward with PyTorch's hooks: per layer the block's input and output, the attention's
               output, the MLP's output, the MLP norm's input (resid_mid), and the patterns the
               module returns with output_attentions
    mapping    the exporter's architecture mapping, by data flow
    trace      torch.jit.trace of the exporter's wrapper, checked against the module on a full and a
               left-padded batch
    save       torch.jit.save with the manifest

    python3 scripts/compat/sweep.py OUT_DIR [--jobs N] [--timeout S] [TYPE ...]

Each family runs in its own forked process (a crash or a hang is that family's result). OUT_DIR gets
<type>.pt (the export), <type>.json (the references, the mapping and the stage reached) and
sweep.json (every family's stage and error, with the versions); scripts/compat/check.mjs reads them.
"""
import json
import multiprocessing
import os
import sys
import time
import traceback
import warnings

import torch
import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import easyroutine_export as exporter  # noqa: E402
from make_hf_fixtures import IDS, SEED, encode, redraw  # noqa: E402
from tiny_config import FAMILY_OVERRIDES, parameter_count, tiny_config  # noqa: E402

STAGES = ["config", "build", "forward", "mapping", "trace", "save"]
# a tiny config that still holds more than this is a config the shrinking missed
MAX_PARAMETERS = 8_000_000


class StageError(Exception):
    def __init__(self, stage, error):
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [l for l in text.splitlines() if l.strip()]
    # the interpreter's own message comes last, after the traced call stack
    line = lines[-1] if "failed in the TorchScript interpreter" in text and lines else next(iter(lines), text)
    line = line.strip()
    return (line if line.startswith(type(error).__name__ + ":") else f"{type(error).__name__}: {line}")[:300]


def _module(model, path):
    return model.get_submodule(path) if path else model


def references(model, mapping):
    """PyTorch's hooks on the module, for a full batch of IDS (paths relative to `model`)."""
    ids = torch.tensor(IDS)
    records = {}
    handles = []

    def record(name, which, index=0):
        def hook(mod, args, kwargs, output):
            if which == "input":
                value = kwargs.get("hidden_states", None)
                if value is None:
                    value = exporter._first_tensor(args)
            elif which == "residual" and isinstance(output, tuple):
                value = output[index]
            else:
                value = exporter._first_tensor(output)
            if value is None:
                return
            if value.dim() == 2 and value.shape[0] == ids.numel():  # tokens flattened (OPT's MLP)
                value = value.reshape(ids.shape[0], ids.shape[1], -1)
            records.setdefault(name, value.detach().clone())

        return hook

    for i, layer in enumerate(mapping["layers"]):
        block = _module(model, layer["block"])
        handles.append(block.register_forward_hook(record(f"resid_in_{i}", "input"), with_kwargs=True))
        element = int(layer["resid_out"].split(".")[1]) if layer.get("resid_out") else 0
        handles.append(block.register_forward_hook(record(f"resid_out_{i}", "residual", element), with_kwargs=True))
        handles.append(_module(model, layer["attention"]).register_forward_hook(record(f"attn_out_{i}", "output"), with_kwargs=True))
        if layer["mlp"] or layer["mlp_out"]:
            handles.append(_module(model, layer["mlp"] or layer["mlp_out"]).register_forward_hook(record(f"mlp_out_{i}", "output"), with_kwargs=True))
        if layer["mlp_norm"] and not layer["parallel"]:
            handles.append(_module(model, layer["mlp_norm"]).register_forward_hook(record(f"resid_mid_{i}", "input"), with_kwargs=True))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    result = {k: encode(v) for k, v in records.items()}
    result["logits"] = encode(out.logits)
    attentions = [a for a in (getattr(out, "attentions", None) or ())]
    # a hybrid returns the patterns of its attention layers only
    layers = range(len(mapping["layers"]))
    if len(attentions) != len(mapping["layers"]):
        layers = [i for i, layer in enumerate(mapping["layers"]) if not layer.get("token_mixer")]
    for i, pattern in zip(layers, attentions):
        if isinstance(pattern, torch.Tensor):
            result[f"pattern_{i}"] = encode(pattern)
    return result


def run_family(model_type: str, out_dir: str) -> dict:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    transformers.utils.logging.set_verbosity_error()
    result = {"type": model_type, "hf_class": MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type], "stage": None, "error": None}
    stage = "config"
    try:
        model_class = getattr(transformers, result["hf_class"])
        # the class's own config (a composite family's causal LM may take its text part only)
        config_class = getattr(model_class, "config_class", None) or CONFIG_MAPPING[model_type]
        config = tiny_config(config_class, FAMILY_OVERRIDES.get(model_type))
        parameters = parameter_count(model_class, config)
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"the tiny config still has {parameters:,} parameters")
        result["stage"] = stage

        stage = "build"
        torch.manual_seed(SEED)
        config._attn_implementation = "eager"
        model = model_class(config).eval()
        redraw(model)
        if hasattr(model, "set_default_language"):  # X-MOD's adapters are per language
            model.set_default_language(next(iter(getattr(config, "languages", None) or ["en_XX"])))
        result["parameters"] = parameters
        result["stage"] = stage

        stage = "forward"
        text = exporter._text_config(config)
        sample = {"input_ids": torch.tensor(IDS), "attention_mask": torch.ones(len(IDS), len(IDS[0]), dtype=torch.long)}
        with torch.no_grad():
            model(**sample, use_cache=False)
        result["stage"] = stage

        stage = "mapping"
        mapping = exporter.find_mapping(model, config, sample)
        refs = references(model, mapping)
        result["stage"] = stage

        stage = "trace"
        path = os.path.join(out_dir, f"{model_type}.pt")
        manifest = exporter.export_model(model, config, path, attn="eager")
        result["stage"] = "save"
        result["trace_check_max_abs_error"] = manifest["trace_check_max_abs_error"]
        refs.update({"input_ids": IDS, "mapping": mapping, "n_layers": len(mapping["layers"]), "vocab_size": text.vocab_size})
        with open(os.path.join(out_dir, f"{model_type}.json"), "w") as f:
            json.dump({**result, "references": refs}, f)
    except BaseException as error:  # noqa: BLE001 - SystemExit from the exporter is a stage's failure too
        result["error"] = _reason(error)
        result["failed_stage"] = stage
        if os.environ.get("EASYROUTINE_COMPAT_TRACEBACK"):
            traceback.print_exc()
        # the trace's own failure and save's are told apart by the exporter's check message
        if stage == "trace" and "torch.jit.save" in traceback.format_exc():
            result["failed_stage"] = "save"
    return result


def _child(model_type, out_dir, queue):
    queue.put(run_family(model_type, out_dir))


def main(argv):
    out_dir = argv[0]
    jobs, timeout, types = 2, 300.0, []
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--jobs":
            jobs = int(next(rest))
        elif arg == "--timeout":
            timeout = float(next(rest))
        else:
            types.append(arg)
    unknown = [t for t in types if t not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES]
    if unknown:
        raise SystemExit(f"compat: unknown model types {', '.join(unknown)} (transformers {transformers.__version__} has {', '.join(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)})")
    types = types or list(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    os.makedirs(out_dir, exist_ok=True)
    context = multiprocessing.get_context("fork")
    pending = list(types)
    running = []  # (type, process, queue, start)
    results = {}
    started = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            model_type = pending.pop(0)
            queue = context.Queue()
            process = context.Process(target=_child, args=(model_type, out_dir, queue))
            process.start()
            running.append((model_type, process, queue, time.time()))
        time.sleep(0.05)
        for entry in list(running):
            model_type, process, queue, start = entry
            if not queue.empty():
                results[model_type] = queue.get()
            elif process.is_alive() and time.time() - start < timeout:
                continue
            elif process.is_alive():
                process.kill()
                results[model_type] = {"type": model_type, "hf_class": MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type], "stage": None, "failed_stage": "timeout", "error": f"no result within {timeout:g} s"}
            elif model_type not in results:
                try:  # the result may reach the queue just after the process ends
                    results[model_type] = queue.get(timeout=2)
                except Exception:  # noqa: BLE001 - queue.Empty: it ended without one
                    pass
            if model_type not in results:
                results[model_type] = {"type": model_type, "hf_class": MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type], "stage": None, "failed_stage": "crash", "error": f"the process ended with code {process.exitcode}"}
            process.join(1)
            running.remove(entry)
            r = results[model_type]
            print(f"  {model_type}: {'saved' if r['stage'] == 'save' else 'failed at ' + str(r.get('failed_stage')) + ': ' + str(r['error'])}", flush=True)
    summary = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seconds": round(time.time() - started, 1),
        "families": [results[t] for t in types],
    }
    with open(os.path.join(out_dir, "sweep.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
