#!/usr/bin/env bash
# ortpeer.sh - elide's prefill against ONNX Runtime f32 on the same seeded weights
# (issue 16); run by bench/run.sh, or alone.  For each shape the benchmark's Llama is
# written as safetensors (bench_mkweights), compiled by elide at f32 and linked into
# bench_prefill (prefill.c), and written as an ONNX model of the same computation
# (bench_onnx, onnx.c) twice: the standard-operator graph an exporter writes, and the
# graph with ONNX Runtime's fused GroupQueryAttention that its own model builder
# writes for Llama.  bench/ort.js then checks that ONNX Runtime's logits for the
# prompt equal elide's with each graph (relative error <= 1e-4, same argmax; a failed
# check fails the row) and runs ROUNDS rounds of a NPREFILL-token prefill at 1 and 2
# threads, elide and both graphs in rotating order; a row's ratio is against the
# graph ONNX Runtime ran fastest.
# Writes BUILD/bench-out/ort.json (bench_report puts it into bench/results.json as
# "onnxruntime") and prints a table.
#
# ONNX Runtime is the npm package onnxruntime-node (its libonnxruntime.so and N-API
# binding), installed with --ignore-scripts into BUILD/peers/ort, never committed.
# Without node or npm the rows are skipped with a message and the script succeeds.
#   bash bench/ortpeer.sh [BUILD_DIR]   (ORT_MODELS="S M", ROUNDS=9, NPREFILL=128)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_paths "${1:-}"
P="$BUILD/peers/ort"
NPREFILL=${NPREFILL:-128}
ROUNDS=${ROUNDS:-9}
mkdir -p "$P"
rm -f "$OUT/ort.json" "$OUT"/ort-*.json

MOD="$P/node_modules"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "== ONNX Runtime: node or npm is not installed: ONNX Runtime rows skipped"
	exit 0
fi
if [[ ! -f $MOD/onnxruntime-node/package.json ]]; then
	if ! (cd "$P" && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node >npm.log 2>&1); then
		echo "== ONNX Runtime: npm could not install onnxruntime-node (see $P/npm.log): ONNX Runtime rows skipped"
		exit 0
	fi
fi
for t in bench_mkweights bench_onnx; do
	[[ -x $BUILD/bench/$t ]] || cmake --build "$BUILD" --target "$t" >/dev/null
done
LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== ONNX Runtime $(node -p "require('$MOD/onnxruntime-node/package.json').version") (onnxruntime-node, f32, CPU) against elide: $NPREFILL-token prefill, $ROUNDS paired rounds"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $LOAD0"
"$BUILD/bench/bench_onnx" tiny "$P/tiny.onnx"

declare -A SHAPE=([S]="288 6 6 6 768 32000 256" [M]="768 12 12 12 2048 32000 1024")
status=0
for name in ${ORT_MODELS:-S M}; do
	read -r dim layers heads kvh ffn vocab ctx <<<"${SHAPE[$name]}"
	d="$P/model-$name"
	mkdir -p "$d"
	llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" >"$d/llama.elide"
	"$BUILD/bench/bench_mkweights" llama "$d/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
	"$BUILD/bench/bench_onnx" "$d/llama.safetensors" "$d/standard.onnx" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$NPREFILL"
	"$BUILD/bench/bench_onnx" "$d/llama.safetensors" "$d/fused.onnx" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$NPREFILL" fused
	"$ELIDE" compile "$d/llama.elide" -w "$d/llama.safetensors" -o "$d/out"
	rm -f "$d/llama.safetensors"
	"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$d/out" "$ROOT/bench/prefill.c" "$d/out/llama.o" "$RTLIB" \
		-lpthread -lm -o "$d/bench_prefill"
	if ! node "$ROOT/bench/ort.js" "$MOD" "$P/tiny.onnx" "$name" "$NPREFILL" "$ROUNDS" 1,2 "$OUT/ort-$name.json" \
		"$d/bench_prefill" "$d/out/llama.weights" standard="$d/standard.onnx" fused="$d/fused.onnx"; then
		echo "== ONNX Runtime against elide on $name: FAILED (see above)"
		status=1
	fi
	rm -f "$d/standard.onnx" "$d/fused.onnx" "$d/out/llama.weights"
done
python3 - "$OUT" "$OUT/ort.json" "$LOAD0" "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" <<'PY'
import glob, json, sys
out, path, load0, load1, cpu = sys.argv[1:6]
rows, version = [], None
for f in sorted(glob.glob(out + "/ort-*.json")):
    r = json.load(open(f))
    version = r["onnxruntime"]
    for th, t in sorted(r["threads"].items()):
        row = dict(shape=r["name"], threads=int(th), prefill_tokens=r["prefill_tokens"], rounds=r["rounds"])
        row.update(t)
        row["max_rel_err"] = max([g["check"]["rel_err"] for g in t["graphs"].values() if "check" in g] or [float("inf")])
        rows.append(row)
if not rows:
    sys.exit(0)
res = dict(peer="ONNX Runtime %s (npm onnxruntime-node, CPU, f32), timed around session.run() in node" % version,
           cpu=cpu, load_before=load0, load_after=load1, rows=rows)
json.dump(res, open(path, "w"), indent=1)
print("shape threads | check max rel err | prefill tok/s elide  ORT standard  ORT fused | ratio to the faster (min..max)")
for r in rows:
    if not r["check_ok"]:
        print(f"{r['shape']:5} {r['threads']:7} | FAILED {r['max_rel_err']:.1e}")
        continue
    g = {k: v.get("ort_prefill_tokens_per_s", float("nan")) for k, v in r["graphs"].items()}
    print(f"{r['shape']:5} {r['threads']:7} | same {r['max_rel_err']:12.1e} | {r['elide_prefill_tokens_per_s']:19.1f}"
          f" {g.get('standard', float('nan')):13.1f} {g.get('fused', float('nan')):10.1f} |"
          f" {r['paired_prefill_ratio']:5.2f} {r['ort_graph']} ({r['ratio_min']:.2f}..{r['ratio_max']:.2f})")
print(f"(ratio: ONNX Runtime seconds / elide seconds per round, median over rounds; ONNX Runtime's call overhead"
      f" {max(r.get('ort_call_overhead_s', 0) for r in rows) * 1e6:.0f} us at most; load {load0} -> {load1})")
PY
exit $status
