#!/usr/bin/env python3
# prefill_pair.py - the paired rounds of bench/prefill_pair.sh: each DIR holds a
# bench_prefill and its out/llama.weights; per round one prefill in each, the order
# rotating; prints median seconds and tokens/s per DIR, and the median, min and max of
# the per-round ratios to the first DIR (its seconds over this one's: > 1 is faster).
#   prefill_pair.py THREADS ROUNDS N DIR_A DIR_B...
import statistics
import subprocess
import sys

th, rounds, n, dirs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
procs = []
for d in dirs:
    p = subprocess.Popen([d + "/bench_prefill", d + "/out/llama.weights", str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    p.stdout.readline()  # the prompt
    procs.append(p)


def run(p):
    p.stdin.write("run %d\n" % th)
    p.stdin.flush()
    line = p.stdout.readline()
    if not line or line.startswith("error"):
        sys.exit("prefill_pair.py: bench_prefill: " + (line.strip() or "exited"))
    return float(line)


for p in procs:  # warm-up
    run(p)
    run(p)
times = [[] for _ in procs]
for r in range(rounds):
    order = list(range(len(procs)))
    order = order[r % len(procs):] + order[:r % len(procs)]
    for i in order:
        times[i].append(run(procs[i]))
for i, d in enumerate(dirs):
    med = statistics.median(times[i])
    rat = [a / b for a, b in zip(times[0], times[i])]
    print(f"{d}: median {med:.4f} s, {n / med:.1f} tokens/s; ratio to the first {statistics.median(rat):.3f}"
          f" ({min(rat):.3f}..{max(rat):.3f})")
for p in procs:
    p.stdin.write("quit\n")
    p.stdin.flush()
    p.wait()
