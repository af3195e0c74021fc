#!/usr/bin/python3
# examples/charlm8/train.py - trains charlm8, the deeper long-context example model.
#
# The architecture and file formats of examples/charlm/train.py (imported from it:
# RMSNorm, RoPE rotate_half, grouped-query attention, SwiGLU, HF tensor names),
# 8 layers and a context of 1024 bytes, trained on two texts of Debian packages:
# the fortunes of `fortunes` and the King James Bible of `bible-kjv-text` (printed
# by `bible` of package `bible-kjv`).  Trained for adaptive compute as LayerSkip
# does: the shared final norm + lm_head is an exit head after every layer (losses
# weighted by depth) and whole layers are dropped during training with a rate that
# rises linearly with depth.
#
# Run by hand (never in CI):  /usr/bin/python3 examples/charlm8/train.py
# Outputs (in examples/charlm8/ unless --out): charlm8.safetensors, heldout_16k.txt,
# train_sample.txt, metrics.json and tests/fixtures/charlm8_{prompt.txt,logits.f32}.
# Deterministic given the seed and the thread count.

import argparse
import importlib.util
import json
import math
import os
import re
import subprocess
import time

# Idle OpenMP threads sleep instead of spinning: on a machine whose cores are
# shared, spinning threads waste most of the CPU (a step 5-10x slower); the wait
# policy changes no result.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

# examples/charlm/train.py, loaded under its own name (both scripts are train.py)
_spec = importlib.util.spec_from_file_location(
	"charlm_train", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charlm", "train.py"))
charlm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(charlm)

BIBLE_CMD = ["bible", "-l79", "Gen1:1-Rev22:21"]
BIBLE_HELDOUT_FRAC = 0.03
CHAPTER = re.compile(rb"\n\n[1-3]? ?[A-Z][A-Za-z ]* [0-9]+\n\n")
PROMPT = "And it came to pass, when the meaning of life is"


def read_bible(path=None):
	"""The King James Bible as `bible -l79 Gen1:1-Rev22:21` prints it (or the file
	at path holding that output).  Split at the first chapter heading ("\\n\\nBook
	N\\n\\n") at or after 97% of its length: the head trains, the tail is held out."""
	if path:
		with open(path, "rb") as f:
			data = f.read()
	else:
		env = dict(os.environ)
		env.pop("COLUMNS", None)
		data = subprocess.run(BIBLE_CMD, check=True, stdout=subprocess.PIPE, env=env).stdout
	cut = int(len(data) * (1.0 - BIBLE_HELDOUT_FRAC))
	m = CHAPTER.search(data, cut)
	if m is None:
		raise SystemExit("train.py: no chapter heading after the 97% mark of the bible text")
	cut = m.start() + 2	# the held-out text starts with the heading line
	return data[:cut], data[cut:], (len(data), cut)


class CharLM8(charlm.CharLM):
	"""charlm's model with layer dropout: forward(tok, drop) skips the layers whose
	entry of drop is true (the residual stream passes through unchanged)."""

	def forward(self, tok, all_exits=True, drop=None):
		T = tok.shape[1]
		x = self.embed_tokens(tok)
		cos, sin = self.cos[:T], self.sin[:T]
		outs = []
		for i, blk in enumerate(self.layers):
			if drop is None or not drop[i]:
				x = blk(x, cos, sin, self.mask)
			if all_exits or i == len(self.layers) - 1:
				outs.append(self.lm_head(self.norm(x)))
		return outs


def main():
	ap = argparse.ArgumentParser()
	ap.add_argument("--dim", type=int, default=192)
	ap.add_argument("--layers", type=int, default=8)
	ap.add_argument("--heads", type=int, default=6)
	ap.add_argument("--kv_heads", type=int, default=2)
	ap.add_argument("--ffn", type=int, default=512)
	ap.add_argument("--ctx", type=int, default=1024)
	ap.add_argument("--short_ctx", type=int, default=256, help="sequence length of the first phase")
	ap.add_argument("--short_batch", type=int, default=4)
	ap.add_argument("--long_batch", type=int, default=2)
	ap.add_argument("--short_steps", type=int, default=360)
	ap.add_argument("--long_steps", type=int, default=90)
	ap.add_argument("--lr", type=float, default=2e-3)
	ap.add_argument("--warmup", type=int, default=20)
	ap.add_argument("--drop_max", type=float, default=0.2, help="layer dropout of the last layer")
	ap.add_argument("--seed", type=int, default=1234)
	ap.add_argument("--threads", type=int, default=2)
	ap.add_argument("--bench", type=int, default=0, help="time this many steps of each phase and exit")
	ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
	ap.add_argument("--fixtures", default=None)
	ap.add_argument("--corpus", default=charlm.FORTUNES, help="folder of the fortune files")
	ap.add_argument("--bible", default=None, help="file holding the output of: " + " ".join(BIBLE_CMD))
	a = ap.parse_args()
	if a.fixtures is None:
		a.fixtures = os.path.join(a.out, "..", "..", "tests", "fixtures")

	torch.set_num_threads(a.threads)
	torch.manual_seed(a.seed)
	gen = torch.Generator().manual_seed(a.seed)
	ftrain, fheld, split = charlm.read_corpus(a.corpus)
	btrain, bheld, (bsize, bcut) = read_bible(a.bible)
	print("fortunes: %d files, train %d bytes, held out %d bytes" % (len(split), len(ftrain), len(fheld)))
	for name, size, cut in split:
		print("  split %-14s %7d bytes, train [0,%d) held [%d,%d)" % (name, size, cut, cut, size))
	print("bible: %d bytes, train [0,%d) held [%d,%d): held out starts %r" % (
		bsize, bcut, bcut, bsize, bheld[:40].decode()))
	train = ftrain + btrain
	tdata = torch.tensor(list(train), dtype=torch.uint8)
	print("training text: fortunes then bible, %d bytes; windows sampled uniformly" % len(train))

	a.ctx = max(a.ctx, a.short_ctx)
	model = CharLM8(a)
	nparam = sum(p.numel() for p in model.parameters())
	print("model: dim %d layers %d heads %d kv_heads %d ffn %d ctx %d: %d parameters"
	      % (a.dim, a.layers, a.heads, a.kv_heads, a.ffn, a.ctx, nparam))
	L = a.layers
	wts = [(i + 1) / (L * (L + 1) / 2) for i in range(L)]
	pdrop = [a.drop_max * i / (L - 1) for i in range(L)]
	print("exit loss weights: " + " ".join("%.3f" % w for w in wts))
	print("layer dropout:     " + " ".join("%.3f" % p for p in pdrop))
	opt = charlm.make_optimizer(model, a.lr)
	if a.bench:
		a.short_steps, a.long_steps = a.bench, a.bench
	steps = a.short_steps + a.long_steps
	print("schedule: %d steps of %d x %d bytes, then %d steps of %d x %d bytes" % (
		a.short_steps, a.short_batch, a.short_ctx, a.long_steps, a.long_batch, a.ctx))
	lr_at = charlm.lr_schedule(a.lr, a.warmup, steps)

	t0 = time.time()
	run = None
	times = []	# wall time of every step since the last log line
	for s in range(steps):
		ts = time.time()
		T, B = (a.short_ctx, a.short_batch) if s < a.short_steps else (a.ctx, a.long_batch)
		idx = torch.randint(0, len(tdata) - T - 1, (B,), generator=gen)
		drop = (torch.rand(L, generator=gen) < torch.tensor(pdrop)).tolist()
		xy = torch.stack([tdata[i:i + T + 1] for i in idx.tolist()]).long()
		x, y = xy[:, :-1], xy[:, 1:]
		loss, cur = charlm.train_step(model, opt, x, y, wts, lr_at(s), drop=drop)
		run = cur if run is None else [0.95 * r + 0.05 * c for r, c in zip(run, cur)]
		times.append(time.time() - ts)
		if s % 25 == 0 or s == steps - 1 or s == a.short_steps:
			el = time.time() - t0
			print("step %5d  T %4d  lr %.2e  loss %.4f  exits(bpb) %s  drop %s  %.1fs  "
			      "s/step min %.2f mean %.2f (%d steps)" % (
				s, T, lr_at(s), loss.item(), " ".join("%.3f" % (r / math.log(2)) for r in run),
				"".join("x" if d else "." for d in drop), el, min(times), sum(times) / len(times),
				len(times)), flush=True)
			times = []
	wall = time.time() - t0
	print("training wall time: %.1f s (%d steps, %.3f s/step, %d threads)" % (wall, steps, wall / steps, a.threads))

	model.eval()
	te = time.time()
	# the held-out sample: 12 KB of held-out bible, then 4 KB of held-out fortunes;
	# every metric is measured on it (and on its two parts)
	sample = bheld[:12288] + fheld[:4096]
	if a.bench:
		sample = bheld[:1024] + fheld[:1024]
	nb = len(sample) - (4096 if not a.bench else 1024)
	metrics = {"parameters": nparam, "steps": steps, "wall_s": round(wall, 1),
	           "layer_dropout": [round(p, 4) for p in pdrop], "exit_loss_weights": [round(w, 4) for w in wts]}
	for c in (128, 512, 1024):
		# the bible part is a multiple of every chunk size: the chunks of the whole
		# sample are those of its two parts, so the whole is their weighted mean
		parts = []
		for name, text in (("bible", sample[:nb]), ("fortunes", sample[nb:])):
			bpb = charlm.chunk_eval(model, text, c)
			metrics["%s_ctx%d_bpb_per_exit" % (name, c)] = [round(v, 4) for v in bpb]
			scored = sum(len(text[s:s + c]) - 1 for s in range(0, len(text), c) if len(text[s:s + c]) >= 2)
			parts.append((bpb, scored))
			print("%-8s ctx %4d: bits/byte per exit (%d bytes): %s  (%.0fs)" % (
				name, c, len(text), " ".join("%.4f" % v for v in bpb), time.time() - te), flush=True)
		n = sum(k for _, k in parts)
		bpb = [sum(b[i] * k for b, k in parts) / n for i in range(L)]
		metrics["heldout_ctx%d_bpb_per_exit" % c] = [round(v, 4) for v in bpb]
		print("%-8s ctx %4d: bits/byte per exit (%d bytes): %s" % (
			"heldout", c, len(sample), " ".join("%.4f" % v for v in bpb)), flush=True)
	if a.bench:
		return

	os.makedirs(a.out, exist_ok=True)
	os.makedirs(a.fixtures, exist_ok=True)
	charlm.save_safetensors(os.path.join(a.out, "charlm8.safetensors"), charlm.hf_tensors(model))
	with open(os.path.join(a.out, "heldout_16k.txt"), "wb") as f:
		f.write(sample)
	with open(os.path.join(a.out, "train_sample.txt"), "wb") as f:
		f.write(ftrain[:8192] + btrain[:8192])
	with open(os.path.join(a.out, "metrics.json"), "w") as f:
		json.dump(metrics, f, indent=1)
		f.write("\n")
	charlm.write_prompt_fixture(model, PROMPT, a.fixtures, "charlm8")
	charlm.print_greedy(model, PROMPT, 160, a.ctx)


if __name__ == "__main__":
	main()
