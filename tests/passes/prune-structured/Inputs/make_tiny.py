#!/usr/bin/env python3
# make_tiny.py - writes tiny.safetensors, the weights of tiny.elide (plain Python, no
# torch): a 4-layer Llama, dim 8, 4 heads of 2 in 2 KV groups, ffn 16, vocab 16,
# seeded random weights with units made small on purpose, so that the lit tests
# know which units each score removes:
#   layer 1 FFN: neurons 2, 5, 11, 12 scaled by 0.01 (gate and up rows, down column)
#   layer 1 attention: KV group 0 (k/v rows) by 0.01, its query heads 0 and 1 (q rows,
#     o columns) by 0.1; query heads 1 and 3 further by 0.01 (and 0.01)
#   layer 2: o_proj and down_proj by 0.001, so the layer is almost the identity
# Run by hand: python3 make_tiny.py (the output is committed).
import json, random, struct

D, L, H, KH, F, V = 8, 4, 4, 2, 16, 16
HD = D // H
rng = random.Random(1234)

def mat(r, c, s=0.5):
    return [[rng.uniform(-s, s) for _ in range(c)] for _ in range(r)]

def scale_rows(m, rows, f):
    for r in rows:
        m[r] = [x * f for x in m[r]]

def scale_cols(m, cols, f):
    for row in m:
        for c in cols:
            row[c] *= f

t = {}
t["model.embed_tokens.weight"] = mat(V, D, 1.0)
for l in range(L):
    p = "model.layers.%d." % l
    wq, wk, wv, wo = mat(D, D), mat(KH * HD, D), mat(KH * HD, D), mat(D, D)
    w1, w3, w2 = mat(F, D), mat(F, D), mat(D, F)
    if l == 1:
        for j in (2, 5, 11, 12):
            scale_rows(w1, [j], 0.01); scale_rows(w3, [j], 0.01); scale_cols(w2, [j], 0.01)
        scale_rows(wk, range(0, HD), 0.01); scale_rows(wv, range(0, HD), 0.01)
        scale_rows(wq, range(0, 2 * HD), 0.1); scale_cols(wo, range(0, 2 * HD), 0.1)
        for h in (1, 3):
            scale_rows(wq, range(h * HD, (h + 1) * HD), 0.01); scale_cols(wo, range(h * HD, (h + 1) * HD), 0.01)
    if l == 2:
        scale_rows(wo, range(D), 0.001); scale_rows(w2, range(D), 0.001)
    t[p + "input_layernorm.weight"] = [1.0 + 0.1 * rng.uniform(-1, 1) for _ in range(D)]
    t[p + "self_attn.q_proj.weight"] = wq
    t[p + "self_attn.k_proj.weight"] = wk
    t[p + "self_attn.v_proj.weight"] = wv
    t[p + "self_attn.o_proj.weight"] = wo
    t[p + "post_attention_layernorm.weight"] = [1.0 + 0.1 * rng.uniform(-1, 1) for _ in range(D)]
    t[p + "mlp.gate_proj.weight"] = w1
    t[p + "mlp.up_proj.weight"] = w3
    t[p + "mlp.down_proj.weight"] = w2
t["model.norm.weight"] = [1.0] * D
t["lm_head.weight"] = mat(V, D, 1.0)

header, data = {}, b""
for name in sorted(t):
    v = t[name]
    flat = [x for row in v for x in row] if isinstance(v[0], list) else v
    shape = [len(v), len(v[0])] if isinstance(v[0], list) else [len(v)]
    b = struct.pack("<%df" % len(flat), *flat)
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
    data += b
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open("tiny.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + data)
