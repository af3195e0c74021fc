#!/usr/bin/env python3
"""make_hostile.py - writes the hostile safetensors files of hostile-weights.test next
to this script (committed; rerun to regenerate them byte for byte)."""
import json, os, struct

here = os.path.dirname(os.path.abspath(__file__))


def write(name, header_text, data):
    hb = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    with open(os.path.join(here, name), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)


vals = [0.5 * i - 3.0 for i in range(16)]
data = struct.pack("<16f", *vals)
hdr = json.dumps({"emb": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}})
write("one.safetensors", hdr, data)
write("bom.safetensors", b"\xef\xbb\xbf" + hdr.encode(), data)
write("nul-space.safetensors", hdr.replace(" ", "\0", 1).encode(), data)
write("nul-key.safetensors", hdr.replace('"emb"', '"emb\\u0000x"'), data)
nan = list(vals)
nan[6] = float("nan")
write("nan.safetensors", hdr, struct.pack("<16f", *nan))
inf = list(vals)
inf[9] = float("-inf")
write("inf.safetensors", hdr, struct.pack("<16f", *inf))
# the same model name with dim 8 (another model hash), for output-set.test
write("one8.safetensors",
      json.dumps({"emb": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}}),
      struct.pack("<32f", *[0.25 * i - 4.0 for i in range(32)]))
# a NUL byte inside a string of the textual IR (.in: not a valid .eir for test_eir)
with open(os.path.join(here, "nul.eir.in"), "wb") as f:
    f.write(b'module @t {\n  layers = 0;\n  param @emb : f32[16, 8] = "emb\0junk";\n}\n')
