"""An independent reader of the safetensors format (the published spec: 8-byte little-endian header
size, JSON header, raw little-endian data), used by the tests to check files written by
ActivationCache.save. Prints {name: {dtype, shape, sum}} and the metadata as JSON. Uses the
`safetensors` package too when it is installed, and checks that both agree."""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
          "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}

path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
(size,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + size])
base = 8 + size
out = {}
for name, entry in header.items():
    if name == "__metadata__":
        continue
    begin, end = entry["data_offsets"]
    raw = bytearray(data[base + begin:base + end])
    t = torch.frombuffer(raw, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"]) if raw else torch.empty(entry["shape"], dtype=DTYPES[entry["dtype"]])
    out[name] = {"dtype": entry["dtype"], "shape": list(t.shape), "sum": float(t.double().sum())}
try:
    from safetensors.torch import load_file  # optional second reader
    for name, t in load_file(path).items():
        assert abs(float(t.double().sum()) - out[name]["sum"]) < 1e-6, name
    checked_by = "safetensors"
except ImportError:
    checked_by = "spec"
print(json.dumps({"tensors": out, "metadata": header.get("__metadata__", {}), "checked_by": checked_by}))
