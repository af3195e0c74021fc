#!/usr/bin/env bash
# run.sh - `make bench`: the machine's read bandwidth, OpenBLAS at the model shapes,
# elide's generated kernels at the same shapes, and the examples/llama model compiled
# at shapes S and M with seeded random weights (decode and prefill, 1 and 2 threads).
# Prints a table and writes bench/results.json.  Benchmarks, not tests: the figures
# depend on the machine and its load.
#   bash bench/run.sh [BUILD_DIR]     (BENCH_QUICK=1: shape S only, fewer shapes;
#                                      BENCH_ONLY=quant: the quantised weights only;
#                                      BENCH_ONLY=onnxruntime: ONNX Runtime's rows only;
#                                      BENCH_ONLY=longctx: the long-context Quest rows only,
#                                      LONG_POS="1024 8000": those positions only,
#                                      LONG_SHAPE="NAME DIM LAYERS ...": that shape only;
#                                      LONG_COMPILE_FLAGS="--quantize=bf16": both models so
#                                      (the JSON records the weight format),
#                                      LONG_RUNS=15: rounds per figure (7);
#                                      BENCH_QUANT="q8 q4": those formats only)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_paths "${1:-}"
rm -f "$OUT"/*.json
# OpenBLAS, for the drivers that pair each run of generated code with OpenBLAS
BLASFLAGS="$(cat "$BUILD/bench/openblas.flags" 2>/dev/null || true)"
# OpenBLAS picks its kernels itself (these variables may be set for other tools)
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

NDECODE=200
NPREFILL=128
# model shapes (issue 5): NAME DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX
MODELS=("S 288 6 6 6 768 32000 256" "M 768 12 12 12 2048 32000 1024")
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then MODELS=("${MODELS[0]}"); fi
# long context (issue 15): M at ctx 8192, 12 and 4 KV heads; Quest's page and budget
LONG_MODELS=("MLONG 768 12 12 12 2048 32000 8192" "MGQA 768 12 12 4 2048 32000 8192")
# LONG_SHAPE="NAME DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX": that shape only (e.g. an
# attention-dominated twin, "TWIN 768 2 12 12 2048 256 8192", for looking at the kernel)
if [[ -n ${LONG_SHAPE:-} ]]; then LONG_MODELS=("$LONG_SHAPE"); fi
LONG_POS="${LONG_POS:-1024 4096 8000}"
LONG_PAGE=16
LONG_BUDGET=1024
LONG_POLICY="attend decode quest(page $LONG_PAGE, budget $LONG_BUDGET);"
# both models fill their caches with the same block-sparse prefill (an 8000-token dense
# prefill's quadratic attention would dominate the section): the same code on the same
# tokens, so both caches hold the same keys and values (bench/README.md, Long context)
LONG_FILL="attend prefill block_topk(block 64, topk 4) min_tokens 2;"

# The linear shapes of a model, NAME:N:K (W[N, K]); wk/wv only when they differ from wq.
shapes_of() {
	local n=$1 d=$2 h=$4 kvh=$5 f=$6 v=$7
	local kvd=$((kvh * (d / h)))
	echo "$n.wq:$d:$d"
	if [[ $kvd != "$d" ]]; then echo "$n.wk:$kvd:$d"; fi
	echo "$n.w1:$f:$d $n.w2:$d:$f $n.lm:$v:$d"
}
SHAPES=()
# weight bytes per decoded token of the step entry, as a compiler manifest counts them
# bench_policy NAME TAG "POLICY TEXT" BYTES_FN [NDEC]: compiles model-NAME as `llamav`
# with the policy, links it with the dense model into bench/policy.c, and writes
# policy-NAME-TAG.json over NDEC decode steps (default NDECODE); BYTES_FN (a command,
# its words split) reads the variant's weight bytes per token from its manifest, the
# manifest's path appended.
bench_policy() {
	local name=$1 tag=$2 policy=$3 bytes_fn=$4 ndec=${5:-$NDECODE} d="$OUT/model-$1"
	echo "== $name with '$policy' against dense ($ndec decode steps, paired runs)"
	sed -E 's/^model llama /model llamav /; s/ for llama / for llamav /' "$d/llama.elide" >"$d/llamav.elide"
	printf '\npolicy v for llamav {\n  %s\n}\n' "$policy" >>"$d/llamav.elide"
	"$ELIDE" compile "$d/llamav.elide" --policy v -w "$d/llama.safetensors" -o "$d/out"
	"$CC" -std=c17 -O2 -D_GNU_SOURCE -DVARIANT=llamav -DVARIANT_HEADER='"llamav.h"' -I"$ROOT" -I"$d/out" \
		"$ROOT/bench/policy.c" "$d/out/llama.o" "$d/out/llamav.o" "$RTLIB" -lpthread -lm -o "$d/bench_policy"
	# shellcheck disable=SC2086
	"$d/bench_policy" "$name" "$policy" "$d/out/llama.weights" "$d/out/llamav.weights" "$ndec" \
		"$(bpt_of "$d/out/llama.json")" "$($bytes_fn "$d/out/llamav.json")" "$OUT/policy-$name-$tag.json"
}
bpt_of() {
	tr -d ' \t\n' <"$1" | grep -o '"name":"step"[^}]*"weight_bytes_per_token":[0-9.e+]*' | grep -o '[0-9.e+]*$'
}
# wformat_of MANIFEST: the format of the parameters that hold most of the weight
# bytes, named as bench/quant.c names them: f32, bf16, q8, q4 (int8 activations),
# q8f, q4f (f32 activations)
wformat_of() {
	python3 - "$1" <<'PY'
import json, sys
by = {}
for w in json.load(open(sys.argv[1]))["weights"]:
    if "format" in w:
        f = w["format"] + ("f" if w.get("activations") == "f32" else "")
        by[f] = by.get(f, 0) + w["bytes"]
if not by:
    sys.exit("run.sh: %s lists no weight formats" % sys.argv[1])
print(max(by, key=by.get))
PY
}
# sched_bpt_of N_MAX N_MIN CTX NDEC MANIFEST: the weight bytes per token of a SkipDecode
# schedule linear(N_MAX, N_MIN, CTX) averaged over decode positions 0..NDEC-1: at
# position t the step runs the path of budget n(t) layers (docs/ir.md), whose bytes
# the manifest lists among the step entry's paths
sched_bpt_of() {
	python3 - "$@" <<'PY'
import json, sys
nmax, nmin, ctx, ndec = (int(a) for a in sys.argv[1:5])
step = [e for e in json.load(open(sys.argv[5]))["entries"] if e["name"] == "step"][0]
by_layers = {p["layers"]: p["weight_bytes_per_token"] for p in step["paths"]}
total = 0
for t in range(ndec):
    n = nmin + -(-(nmax - nmin) * (ctx - t) // ctx) if t < ctx else nmin
    if n not in by_layers:
        sys.exit("run.sh: the manifest has no step path of %d layers (position %d)" % (n, t))
    total += by_layers[n]
print(total / ndec)
PY
}
for m in "${MODELS[@]}"; do
	# shellcheck disable=SC2086
	SHAPES+=($(shapes_of $m))
done

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
# BENCH_ONLY=quant|longctx: only that section (the other figures stay as they are)
ONLY=${BENCH_ONLY:-}
if [[ -z $ONLY ]]; then
echo "== read bandwidth (sum of a 512 MiB float array)"
"$BUILD/bench/bench_stream" "$OUT/stream.json" 512 1 2

if [[ -x "$BUILD/bench/bench_blas" ]]; then
	echo "== OpenBLAS (T = $NPREFILL rows for SGEMM)"
	"$BUILD/bench/bench_blas" "$OUT/blas.json" "$NPREFILL" "${SHAPES[@]}"
else
	echo "== OpenBLAS: not built (libopenblas-dev missing), skipped"
fi

fi

if ! "$ELIDE" compile --help >/dev/null 2>&1; then
	echo "== elide compile is not available yet: generated kernels and models skipped"
else
	if [[ -z $ONLY ]]; then
	echo "== elide generated kernels (one-linear model per shape; T = $NPREFILL rows for GEMM)"
	printf '%-10s %6s %6s  %7s %7s  %7s %7s   | %s\n' "elide" n k "gemv 1t" "gemv 2t" "gemm 1t" "gemm 2t" \
		"vs OpenBLAS in the same process (paired runs)"
	for s in "${SHAPES[@]}"; do
		IFS=: read -r name n k <<<"$s"
		dir="$OUT/kern-$name"
		mkdir -p "$dir"
		kern_model "$n" "$k" "$NPREFILL" >"$dir/kern.elide"
		"$BUILD/bench/bench_mkweights" linear "$dir/kern.safetensors" "$n" "$k" 8 1
		"$ELIDE" compile "$dir/kern.elide" -w "$dir/kern.safetensors" -o "$dir/out"
		# shellcheck disable=SC2086
		"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$dir/out" "$ROOT/bench/kernel.c" "$dir/out/kern.o" \
			"$RTLIB" $BLASFLAGS -lpthread -lm -o "$dir/bench_kernel"
		"$dir/bench_kernel" "$name" "$dir/out/kern.weights" "$NPREFILL" "$OUT/kernel-$name.json"
		rm -f "$dir/kern.safetensors"
	done

	fi
	if [[ -z $ONLY ]]; then
	echo "== examples/llama compiled at the benchmark shapes ($NDECODE decode steps, $NPREFILL-token prefill)"
	for m in "${MODELS[@]}"; do
		read -r name dim layers heads kvh ffn vocab ctx <<<"$m"
		dir="$OUT/model-$name"
		mkdir -p "$dir"
		# the example model, unchanged but for its sizes
		llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" >"$dir/llama.elide"
		"$BUILD/bench/bench_mkweights" llama "$dir/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
		"$ELIDE" compile "$dir/llama.elide" -w "$dir/llama.safetensors" -o "$dir/out"
		rm -f "$dir/llama.safetensors"
		bpt=$(bpt_of "$dir/out/llama.json" || echo 0)
		# shellcheck disable=SC2086
		"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$dir/out" "$ROOT/bench/model.c" "$dir/out/llama.o" \
			"$RTLIB" $BLASFLAGS -lpthread -lm -o "$dir/bench_model"
		"$dir/bench_model" "$name" "$dir/out/llama.weights" "$NDECODE" "$NPREFILL" "${bpt:-0}" "$OUT/model-$name.json"
	done

	# policies against dense on the largest shape: the variant is model `llamav`, compiled
	# with the policy and decoded in the same process as the dense model, in alternation
	read -r name dim layers heads kvh ffn vocab ctx <<<"${MODELS[-1]}"
	dir="$OUT/model-$name"
	"$BUILD/bench/bench_mkweights" llama "$dir/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
	bench_policy "$name" prune "prune ffn_neuron keep 0.5 score l2;" bpt_of
	# SkipDecode (issue 14): the budget falls from every layer to half of them over the
	# context; over 1000 decode positions of M (12 layers, context 1024) a token runs
	# 9.56 layers on average
	nsd=$((ctx < 1000 ? ctx : 1000))
	bench_policy "$name" skip "skip schedule linear($layers, $((layers / 2)), $ctx);" \
		"sched_bpt_of $layers $((layers / 2)) $ctx $nsd" "$nsd"
	rm -f "$dir/llama.safetensors"
	fi

	# long context (issue 15): the M shape at ctx 8192, MHA and GQA (4 KV heads), as
	# `llama` (dense) and `llamas` (Quest decode), decoded at LONG_POS in one process,
	# in alternation (bench/longctx.c)
	if [[ -z $ONLY || $ONLY == longctx ]]; then
	for m in "${LONG_MODELS[@]}"; do
		read -r name dim layers heads kvh ffn vocab ctx <<<"$m"
		dir="$OUT/long-$name"
		mkdir -p "$dir"
		echo "== $name: '$LONG_POLICY' against dense at positions $LONG_POS (paired runs)"
		llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" | sed -n '1,/^}/p' >"$dir/llama.elide" # the model, no policies
		sed -E 's/^model llama /model llamas /' "$dir/llama.elide" >"$dir/llamas.elide"
		printf '\npolicy fill for llama {\n  %s\n}\n' "$LONG_FILL" >>"$dir/llama.elide"
		printf '\npolicy quest1024 for llamas {\n  %s\n  %s\n}\n' "$LONG_FILL" "$LONG_POLICY" >>"$dir/llamas.elide"
		"$BUILD/bench/bench_mkweights" llama "$dir/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
		# shellcheck disable=SC2086
		"$ELIDE" compile "$dir/llama.elide" --policy fill ${LONG_COMPILE_FLAGS:-} -w "$dir/llama.safetensors" -o "$dir/out"
		# shellcheck disable=SC2086
		"$ELIDE" compile "$dir/llamas.elide" --policy quest1024 ${LONG_COMPILE_FLAGS:-} -w "$dir/llama.safetensors" -o "$dir/out"
		rm -f "$dir/llama.safetensors"
		# the weights' format and bytes per token, from the manifests (the same in both)
		fmt=$(wformat_of "$dir/out/llama.json")
		if [[ $fmt != "$(wformat_of "$dir/out/llamas.json")" ]]; then
			echo "run.sh: $name: the two long-context models' weight formats differ" >&2
			exit 1
		fi
		"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$dir/out" "$ROOT/bench/longctx.c" "$dir/out/llama.o" \
			"$dir/out/llamas.o" "$RTLIB" -lpthread -lm -o "$dir/bench_longctx"
		# shellcheck disable=SC2086
		LONG_COMPILE_FLAGS="${LONG_COMPILE_FLAGS:-}" "$dir/bench_longctx" "$name" "$fmt" \
			"$(bpt_of "$dir/out/llama.json")" "$dir/out/llama.weights" "$dir/out/llamas.weights" "$LONG_BUDGET" \
			"$LONG_PAGE" "$OUT/longctx-$name.json" $LONG_POS
		rm -f "$dir/out/llama.weights" "$dir/out/llamas.weights"
	done
	fi

	# quantised weights (issue 16): every shape again as model `llamaq`, compiled with
	# --quantize=F (q8, q4: int8 activations, the default; q8f, q4f: --activations=f32),
	# decoded and prefilled in the same
	# process as the f32 model, in alternation (not with BENCH_ONLY=onnxruntime)
	QMODELS=("${MODELS[@]}")
	[[ -z $ONLY || $ONLY == quant ]] || QMODELS=()
	for m in "${QMODELS[@]}"; do
		read -r name dim layers heads kvh ffn vocab ctx <<<"$m"
		dir="$OUT/model-$name"
		mkdir -p "$dir"
		echo "== $name quantised against f32 ($NDECODE decode steps, $NPREFILL-token prefill, paired runs)"
		llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" >"$dir/llama.elide"
		sed -E 's/^model llama /model llamaq /; s/ for llama / for llamaq /' "$dir/llama.elide" >"$dir/llamaq.elide"
		"$BUILD/bench/bench_mkweights" llama "$dir/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
		"$ELIDE" compile "$dir/llama.elide" -w "$dir/llama.safetensors" -o "$dir/out"
		for q in ${BENCH_QUANT:-q8 q4 bf16 q8f q4f}; do
			case $q in
			q8f | q4f) flags="--quantize=${q%f} --activations=f32" ;;
			*) flags="--quantize=$q" ;;
			esac
			# shellcheck disable=SC2086
			"$ELIDE" compile "$dir/llamaq.elide" -w "$dir/llama.safetensors" -o "$dir/out-$q" $flags
			"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$dir/out" -I"$dir/out-$q" "$ROOT/bench/quant.c" \
				"$dir/out/llama.o" "$dir/out-$q/llamaq.o" "$RTLIB" -lpthread -lm -o "$dir/bench_quant"
			"$dir/bench_quant" "$name" "$q" "$dir/out/llama.weights" "$dir/out-$q/llamaq.weights" "$NDECODE" \
				"$NPREFILL" "$(bpt_of "$dir/out/llama.json")" "$(bpt_of "$dir/out-$q/llamaq.json")" \
				"$OUT/quant-$name-$q.json"
			rm -f "$dir/out-$q/llamaq.weights"
		done
		rm -f "$dir/llama.safetensors"
	done

	# ONNX Runtime f32 against elide's prefill on the same weights (issue 16); skipped
	# with a message when npm cannot install onnxruntime-node
	if [[ -z $ONLY || $ONLY == onnxruntime ]]; then
		ORT_MODELS="${MODELS[*]%% *}" bash "$ROOT/bench/ortpeer.sh" "$BUILD" ||
			echo "== ONNX Runtime against elide: a check failed, its row holds no timing"
	fi
fi
echo "== summary"
if [[ -z $ONLY ]]; then
	"$BUILD/bench/bench_report" "$OUT" "$ROOT/bench/results.json"
else
	# one section: its figures replace that section of bench/results.json only
	"$BUILD/bench/bench_report" "$OUT" "$OUT/results-$ONLY.json"
	python3 - "$OUT/results-$ONLY.json" "$ROOT/bench/results.json" "$ONLY" <<'PY'
import json, sys
new, path, key = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
if key not in new:
    sys.exit("no '%s' figures: %s is unchanged" % (key, path))
res = json.load(open(path))
res[key] = new[key]
json.dump(res, open(path, "w"), indent="\t", separators=(",", ":\t"))
open(path, "a").write("\n")
print("updated the '%s' section of %s" % (key, path))
PY
fi
