#!/usr/bin/python3
# examples/charlm/train.py - trains charlm, the byte-level example model of elide.
#
# A small Llama-style decoder (RMSNorm, RoPE rotate_half, grouped-query attention,
# SwiGLU) over bytes (vocab 256), trained on the text of Debian's `fortunes` package.
# Trained for early exit: the shared final norm + lm_head is applied after every
# layer and the per-layer losses are summed with weights growing with depth
# (w_l = l / sum(1..L), as in CALM / LayerSkip).
#
# Run by hand (never in CI):  /usr/bin/python3 examples/charlm/train.py --steps N
# Outputs (in examples/charlm/ unless --out): charlm.safetensors (f32, Hugging Face
# Llama names), heldout_4k.txt, train_sample.txt, and tests/fixtures/charlm_prompt.txt
# + tests/fixtures/charlm_logits.f32.  Deterministic given the seed and thread count.

import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FORTUNES = "/usr/share/games/fortunes"
EXCLUDE = {"ascii-art"}		# pictures, not English text
HELDOUT_FRAC = 0.05
PROMPT = "The meaning of life is"


def read_corpus(root=FORTUNES):
	"""Split every fortune file at the first fortune boundary ("\\n%\\n") at or
	after 95% of its length: the head is training text, the tail held out."""
	train, held, split = [], [], []
	for name in sorted(os.listdir(root)):
		path = os.path.join(root, name)
		if name.endswith(".dat") or name.endswith(".u8") or name in EXCLUDE:
			continue
		if os.path.islink(path) or not os.path.isfile(path):
			continue
		with open(path, "rb") as f:
			data = f.read()
		cut = int(len(data) * (1.0 - HELDOUT_FRAC))
		b = data.find(b"\n%\n", cut)
		cut = len(data) if b < 0 else b + 3
		train.append(data[:cut])
		held.append(data[cut:])
		split.append((name, len(data), cut))
	return b"".join(train), b"".join(held), split


class RMSNorm(nn.Module):
	def __init__(self, dim, eps=1e-5):
		super().__init__()
		self.eps = eps
		self.weight = nn.Parameter(torch.ones(dim))

	def forward(self, x):
		return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
	h = x.shape[-1] // 2
	return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
	def __init__(self, a):
		super().__init__()
		self.h, self.kh, self.hd = a.heads, a.kv_heads, a.dim // a.heads
		self.input_layernorm = RMSNorm(a.dim)
		self.q_proj = nn.Linear(a.dim, a.heads * self.hd, bias=False)
		self.k_proj = nn.Linear(a.dim, a.kv_heads * self.hd, bias=False)
		self.v_proj = nn.Linear(a.dim, a.kv_heads * self.hd, bias=False)
		self.o_proj = nn.Linear(a.heads * self.hd, a.dim, bias=False)
		self.post_attention_layernorm = RMSNorm(a.dim)
		self.gate_proj = nn.Linear(a.dim, a.ffn, bias=False)
		self.up_proj = nn.Linear(a.dim, a.ffn, bias=False)
		self.down_proj = nn.Linear(a.ffn, a.dim, bias=False)

	def forward(self, x, cos, sin, mask):
		B, T, _ = x.shape
		h = self.input_layernorm(x)
		q = self.q_proj(h).view(B, T, self.h, self.hd).transpose(1, 2)
		k = self.k_proj(h).view(B, T, self.kh, self.hd).transpose(1, 2)
		v = self.v_proj(h).view(B, T, self.kh, self.hd).transpose(1, 2)
		q = q * cos + rotate_half(q) * sin
		k = k * cos + rotate_half(k) * sin
		rep = self.h // self.kh		# HF repeat_kv: query head i uses kv head i // rep
		k = k.repeat_interleave(rep, dim=1)
		v = v.repeat_interleave(rep, dim=1)
		s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd) + mask[:T, :T]
		o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, self.h * self.hd)
		x = x + self.o_proj(o)
		h = self.post_attention_layernorm(x)
		return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class CharLM(nn.Module):
	def __init__(self, a):
		super().__init__()
		self.a = a
		self.embed_tokens = nn.Embedding(256, a.dim)
		self.layers = nn.ModuleList([Block(a) for _ in range(a.layers)])
		self.norm = RMSNorm(a.dim)
		self.lm_head = nn.Linear(a.dim, 256, bias=False)
		hd = a.dim // a.heads
		inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
		t = torch.arange(a.ctx, dtype=torch.float64)
		fr = torch.outer(t, inv)
		emb = torch.cat((fr, fr), dim=-1)
		self.register_buffer("cos", emb.cos().float(), persistent=False)
		self.register_buffer("sin", emb.sin().float(), persistent=False)
		m = torch.full((a.ctx, a.ctx), float("-inf")).triu(1)
		self.register_buffer("mask", m, persistent=False)
		for p in self.modules():
			if isinstance(p, nn.Linear):
				nn.init.normal_(p.weight, std=0.02)
			elif isinstance(p, nn.Embedding):
				nn.init.normal_(p.weight, std=0.02)
		for blk in self.layers:	# GPT-2 style scaled init of residual outputs
			nn.init.normal_(blk.o_proj.weight, std=0.02 / math.sqrt(2 * a.layers))
			nn.init.normal_(blk.down_proj.weight, std=0.02 / math.sqrt(2 * a.layers))

	def forward(self, tok, all_exits=True):
		T = tok.shape[1]
		x = self.embed_tokens(tok)
		cos, sin = self.cos[:T], self.sin[:T]
		outs = []
		for i, blk in enumerate(self.layers):
			x = blk(x, cos, sin, self.mask)
			if all_exits or i == len(self.layers) - 1:
				outs.append(self.lm_head(self.norm(x)))
		return outs


def chunk_eval(model, data, ctx):
	"""Bits per byte the way elide's charlm --eval computes it: the text is cut
	into consecutive chunks of ctx bytes, each starting from an empty context;
	within a chunk byte i+1 is predicted from bytes 0..i (the first byte of each
	chunk is not scored).  Returns the bits per byte of every exit."""
	L = len(model.layers)
	nll = [0.0] * L
	n = 0
	with torch.no_grad():
		for s in range(0, len(data), ctx):
			c = data[s:s + ctx]
			if len(c) < 2:
				continue
			t = torch.tensor(list(c), dtype=torch.long).unsqueeze(0)
			outs = model(t[:, :-1])
			for i, lo in enumerate(outs):
				nll[i] += F.cross_entropy(lo[0].double(), t[0, 1:], reduction="sum").item()
			n += len(c) - 1
	return [v / n / math.log(2) for v in nll]


def save_safetensors(path, tensors):
	header, off, blobs = {}, 0, []
	for name, t in tensors:
		b = t.detach().contiguous().float().numpy().astype("<f4").tobytes()
		header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
		off += len(b)
		blobs.append(b)
	header["__metadata__"] = {"format": "pt", "model": "elide charlm"}
	h = json.dumps(header, separators=(",", ":")).encode()
	h += b" " * ((8 - len(h) % 8) % 8)
	with open(path, "wb") as f:
		f.write(struct.pack("<Q", len(h)))
		f.write(h)
		for b in blobs:
			f.write(b)


def hf_tensors(model):
	out = [("model.embed_tokens.weight", model.embed_tokens.weight)]
	for l, b in enumerate(model.layers):
		p = "model.layers.%d." % l
		out += [
			(p + "input_layernorm.weight", b.input_layernorm.weight),
			(p + "self_attn.q_proj.weight", b.q_proj.weight),
			(p + "self_attn.k_proj.weight", b.k_proj.weight),
			(p + "self_attn.v_proj.weight", b.v_proj.weight),
			(p + "self_attn.o_proj.weight", b.o_proj.weight),
			(p + "post_attention_layernorm.weight", b.post_attention_layernorm.weight),
			(p + "mlp.gate_proj.weight", b.gate_proj.weight),
			(p + "mlp.up_proj.weight", b.up_proj.weight),
			(p + "mlp.down_proj.weight", b.down_proj.weight),
		]
	out += [("model.norm.weight", model.norm.weight), ("lm_head.weight", model.lm_head.weight)]
	return out


def make_optimizer(model, lr):
	"""AdamW with weight decay 0.1 on the matrices, none on the norms."""
	decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
	nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
	return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
	                          {"params": nodecay, "weight_decay": 0.0}],
	                         lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lr_schedule(lr, warmup, steps):
	"""Linear warm-up, then a cosine from lr down to lr / 10."""
	def lr_at(s):
		if s < warmup:
			return lr * (s + 1) / warmup
		p = (s - warmup) / max(1, steps - warmup)
		return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
	return lr_at


def train_step(model, opt, x, y, wts, lr, **kw):
	"""One optimiser step on the depth-weighted sum of the exits' losses; returns
	the total loss and the exits' losses."""
	for g in opt.param_groups:
		g["lr"] = lr
	outs = model(x, **kw)
	losses = [F.cross_entropy(o.reshape(-1, 256), y.reshape(-1)) for o in outs]
	loss = sum(w * l for w, l in zip(wts, losses))
	opt.zero_grad(set_to_none=True)
	loss.backward()
	torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
	opt.step()
	return loss, [l.item() for l in losses]


def write_prompt_fixture(model, prompt, fixtures, name):
	"""tests/fixtures/NAME_prompt.txt and NAME_logits.f32: for every position t of
	the prompt, the final-exit logits predicting byte t+1 (row-major [len(prompt)][256],
	little-endian f32)."""
	with torch.no_grad():
		t = torch.tensor(list(prompt.encode()), dtype=torch.long).unsqueeze(0)
		lo = model(t, all_exits=False)[-1][0]
	with open(os.path.join(fixtures, name + "_prompt.txt"), "wb") as f:
		f.write(prompt.encode())
	with open(os.path.join(fixtures, name + "_logits.f32"), "wb") as f:
		f.write(lo.contiguous().numpy().astype("<f4").tobytes())


def print_greedy(model, prompt, n, ctx):
	"""A greedy continuation of the prompt, for the log."""
	with torch.no_grad():
		ids = list(prompt.encode())
		for _ in range(n):
			t = torch.tensor(ids[-ctx:], dtype=torch.long).unsqueeze(0)
			ids.append(int(model(t, all_exits=False)[-1][0, -1].argmax()))
	print("greedy: %r" % bytes(ids).decode("utf-8", "replace"))


def main():
	ap = argparse.ArgumentParser()
	ap.add_argument("--dim", type=int, default=256)
	ap.add_argument("--layers", type=int, default=4)
	ap.add_argument("--heads", type=int, default=8)
	ap.add_argument("--kv_heads", type=int, default=2)
	ap.add_argument("--ffn", type=int, default=688)
	ap.add_argument("--ctx", type=int, default=256)
	ap.add_argument("--batch", type=int, default=8)
	ap.add_argument("--steps", type=int, default=1400)
	ap.add_argument("--lr", type=float, default=2e-3)
	ap.add_argument("--warmup", type=int, default=50)
	ap.add_argument("--seed", type=int, default=1234)
	ap.add_argument("--threads", type=int, default=2)
	ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
	ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
	ap.add_argument("--fixtures", default=None)
	ap.add_argument("--corpus", default=FORTUNES, help="folder of the fortune files")
	a = ap.parse_args()
	if a.fixtures is None:
		a.fixtures = os.path.join(a.out, "..", "..", "tests", "fixtures")

	torch.set_num_threads(a.threads)
	torch.manual_seed(a.seed)
	gen = torch.Generator().manual_seed(a.seed)
	train, held, split = read_corpus(a.corpus)
	print("corpus: %d files, train %d bytes, held out %d bytes" % (len(split), len(train), len(held)))
	for name, size, cut in split:
		print("  split %-14s %7d bytes, train [0,%d) held [%d,%d)" % (name, size, cut, cut, size))
	tdata = torch.tensor(list(train), dtype=torch.uint8)

	model = CharLM(a)
	nparam = sum(p.numel() for p in model.parameters())
	print("model: dim %d layers %d heads %d kv_heads %d ffn %d ctx %d: %d parameters"
	      % (a.dim, a.layers, a.heads, a.kv_heads, a.ffn, a.ctx, nparam))
	L = a.layers
	wts = [(i + 1) / (L * (L + 1) / 2) for i in range(L)]
	print("exit loss weights: " + " ".join("%.3f" % w for w in wts))
	opt = make_optimizer(model, a.lr)
	steps = a.bench if a.bench else a.steps
	lr_at = lr_schedule(a.lr, a.warmup, steps)

	t0 = time.time()
	run = None
	for s in range(steps):
		idx = torch.randint(0, len(tdata) - a.ctx - 1, (a.batch,), generator=gen)
		xy = torch.stack([tdata[i:i + a.ctx + 1] for i in idx.tolist()]).long()
		x, y = xy[:, :-1], xy[:, 1:]
		loss, cur = train_step(model, opt, x, y, wts, lr_at(s))
		run = cur if run is None else [0.95 * r + 0.05 * c for r, c in zip(run, cur)]
		if s % 25 == 0 or s == steps - 1:
			el = time.time() - t0
			print("step %5d  lr %.2e  loss %.4f  exits(bpb) %s  %.1fs (%.2fs/step)" % (
				s, lr_at(s), loss.item(), " ".join("%.3f" % (r / math.log(2)) for r in run),
				el, el / (s + 1)), flush=True)
	wall = time.time() - t0
	print("training wall time: %.1f s (%d steps, %.3f s/step, %d threads)" % (wall, steps, wall / steps, a.threads))
	if a.bench:
		return

	model.eval()
	sample = held[:4096]
	hb = chunk_eval(model, held, a.ctx)
	sb = chunk_eval(model, sample, a.ctx)
	print("held-out bits/byte per exit (all %d bytes): %s" % (len(held), " ".join("%.4f" % v for v in hb)))
	print("heldout_4k bits/byte per exit: %s" % " ".join("%.4f" % v for v in sb))
	print("FINAL held-out bpb %.4f  heldout_4k bpb %.4f" % (hb[-1], sb[-1]))

	os.makedirs(a.out, exist_ok=True)
	os.makedirs(a.fixtures, exist_ok=True)
	save_safetensors(os.path.join(a.out, "charlm.safetensors"), hf_tensors(model))
	with open(os.path.join(a.out, "heldout_4k.txt"), "wb") as f:
		f.write(sample)
	with open(os.path.join(a.out, "train_sample.txt"), "wb") as f:
		f.write(train[:16384])
	with open(os.path.join(a.out, "metrics.json"), "w") as f:
		json.dump({"parameters": nparam, "steps": steps, "wall_s": round(wall, 1),
		           "heldout_bpb_per_exit": [round(v, 4) for v in hb],
		           "heldout_4k_bpb_per_exit": [round(v, 4) for v in sb],
		           "heldout_4k_bpb": round(sb[-1], 4), "heldout_bpb": round(hb[-1], 4)}, f, indent=1)
		f.write("\n")
	write_prompt_fixture(model, PROMPT, a.fixtures, "charlm")
	print_greedy(model, PROMPT, 120, a.ctx)


if __name__ == "__main__":
	main()
