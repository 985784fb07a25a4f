"""Trains the model bundled in models/: a 2-layer attention-only transformer that learns induction
heads, the circuit that copies what followed an earlier occurrence of the current token.

    python3 scripts/train_induction.py [models/induction-2l.pt]

Training data: random tokens in which a block of random length is repeated at a random place, the
loss taken where the next token is a repeat; a repeat can be predicted by a previous-token head in
layer 0 and an induction head in layer 1 that reads it (Olsson et al., 2022), and (since the
distances vary) by nothing positional. The demo then studies BOS, HALF random tokens, the same HALF
tokens again. Seeded and single-threaded, so a rerun on the same
torch gives the same weights; it takes under 2 minutes on 2 cores. The TorchScript file is traced;
models/induction-2l.json records the configuration and the losses.
"""
import json
import math
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from reference_models import INDUCTION_CONFIG as CONFIG, induction_model, repeated_batch, repeated_half_loss  # noqa: E402

TRAINING = dict(seed=0, steps=4000, batch=64, lr=3e-3, weight_decay=0.01)


def training_batch(generator: torch.Generator, batch: int):
    """Random tokens where each row repeats a block of random length L in [4, half] at a random
    place after a random gap, so that positions alone never predict the repeat: the model has to
    learn induction (copy what followed this token's earlier occurrence). Returns the ids and the
    mask of the positions whose next token is a repeat (where the loss is taken)."""
    half, ctx = CONFIG["half"], CONFIG["ctx"]
    ids = torch.randint(1, CONFIG["vocab"], (batch, ctx), generator=generator)
    ids[:, 0] = CONFIG["bos"]
    predictable = torch.zeros(batch, ctx - 1, dtype=torch.bool)
    for row in range(batch):
        length = int(torch.randint(4, half + 1, (1,), generator=generator))
        room = ctx - 1 - 2 * length  # free positions for the offset and the gap
        start = 1 + int(torch.randint(0, room + 1, (1,), generator=generator))
        gap = int(torch.randint(0, room - (start - 1) + 1, (1,), generator=generator))
        second = start + length + gap
        ids[row, second : second + length] = ids[row, start : start + length]
        predictable[row, second : second + length - 1] = True  # position p predicts p + 1
    return ids, predictable


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "models", "induction-2l.pt")
    torch.set_num_threads(1)
    torch.manual_seed(TRAINING["seed"])
    generator = torch.Generator().manual_seed(TRAINING["seed"])
    model = induction_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAINING["lr"], weight_decay=TRAINING["weight_decay"])
    started = time.time()
    history = []
    for step in range(1, TRAINING["steps"] + 1):
        ids, predictable = training_batch(generator, TRAINING["batch"])
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1][predictable], ids[:, 1:][predictable])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == 1:
            with torch.no_grad():
                check = repeated_batch(torch.Generator().manual_seed(7), 64)
                repeated = repeated_half_loss(model(check), check).item()
            history.append({"step": step, "loss": round(loss.item(), 4), "repeated_half_loss": round(repeated, 4)})
            print(f"step {step:5d}  loss {loss.item():.3f}  repeated-half loss {repeated:.3f}  ({time.time() - started:.0f} s)", flush=True)
    model.eval()
    with torch.no_grad():
        ids = repeated_batch(torch.Generator().manual_seed(12345), 256)
        held_out = repeated_half_loss(model(ids), ids).item()
    print(f"held-out repeated-half loss {held_out:.4f} (uniform guess: {math.log(CONFIG['vocab'] - 1):.2f})")
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # the constant 1/sqrt(head size)
    traced = torch.jit.trace(model, repeated_batch(torch.Generator().manual_seed(1), 1))
    # its tokenizer (words w1..w62 for the ids, BOS 0 added, '<pad>' 63), as `easyroutine export` embeds one
    here = os.path.dirname(__file__)
    tokenizer = {name: open(os.path.join(here, "..", "models", f"induction-2l-{name}"), encoding="utf-8").read() for name in ("tokenizer.json", "tokenizer_config.json")}
    torch.jit.save(traced, out, _extra_files=tokenizer)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump({"config": CONFIG, "training": TRAINING, "torch": torch.__version__, "history": history, "held_out_repeated_half_loss": round(held_out, 4)}, f, indent=2)
        f.write("\n")
    print(f"wrote {out} ({os.path.getsize(out) // 1024} KB)")


if __name__ == "__main__":
    main()
