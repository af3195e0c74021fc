#!/usr/bin/env python3
# split_safetensors.py IN OUT_A OUT_B - writes the tensors of a safetensors file into
# two files, alternately, as a checkpoint in shards (for sharded-weights.test).
import json
import struct
import sys

src, out_a, out_b = sys.argv[1:4]
with open(src, "rb") as f:
    data = f.read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
body = data[8 + n:]
names = sorted(k for k in header if k != "__metadata__")
for out, part in ((out_a, names[0::2]), (out_b, names[1::2])):
    hdr, chunks, at = {}, [], 0
    for k in part:
        b, e = header[k]["data_offsets"]
        hdr[k] = {"dtype": header[k]["dtype"], "shape": header[k]["shape"], "data_offsets": [at, at + e - b]}
        chunks.append(body[b:e])
        at += e - b
    text = json.dumps(hdr).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
