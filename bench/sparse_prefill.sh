#!/usr/bin/env bash
# sparse_prefill.sh - block-sparse prefill against dense attention (issue 15): the
# examples/llama model at shape S with a long context (ctx 2048, seeded random
# weights), compiled dense and with each `attend prefill` statement below, prefills
# of NPREFILL tokens paired in one process (bench/sparse_prefill.c), 1 and 2 threads.
# Prints a table and writes BUILD/bench-out/sparse-prefill-TAG.json.  A benchmark,
# not a test: the figures depend on the machine and its load.
#   bash bench/sparse_prefill.sh [BUILD_DIR]   (NPREFILL=N: prompt length, default 2048)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_paths "${1:-}"
NPREFILL="${NPREFILL:-2048}"
read -r name dim layers heads kvh ffn vocab ctx <<<"S 288 6 6 6 768 32000 2048"
BLOCK=64
POLICIES=("topk4|attend prefill block_topk(block $BLOCK, topk 4);"
	"cov09|attend prefill coverage gamma 0.9 block $BLOCK;")
make -C "$BUILD" bench_mkweights elide elide_rt >/dev/null
dir="$OUT/sparse-prefill"
mkdir -p "$dir"
llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" >"$dir/llama.elide"
"$BUILD/bench/bench_mkweights" llama "$dir/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
"$ELIDE" compile "$dir/llama.elide" -w "$dir/llama.safetensors" -o "$dir/out"
echo "== $name (ctx $ctx): block-sparse prefill against dense ($NPREFILL tokens, paired runs); load $(cut -d' ' -f1-3 /proc/loadavg)"
for p in "${POLICIES[@]}"; do
	tag=${p%%|*} policy=${p#*|}
	sed -E 's/^model llama /model llamav /; s/ for llama / for llamav /' "$dir/llama.elide" >"$dir/llamav.elide"
	printf '\npolicy v for llamav {\n  %s\n}\n' "$policy" >>"$dir/llamav.elide"
	"$ELIDE" compile "$dir/llamav.elide" --policy v -w "$dir/llama.safetensors" -o "$dir/out"
	"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$dir/out" "$ROOT/bench/sparse_prefill.c" "$dir/out/llama.o" \
		"$dir/out/llamav.o" "$RTLIB" -lpthread -lm -o "$dir/bench_sparse_prefill"
	"$dir/bench_sparse_prefill" "$name-$tag" "$policy" "$dir/out/llama.weights" "$dir/out/llamav.weights" \
		"$NPREFILL" "$BLOCK" "$OUT/sparse-prefill-$tag.json"
done
rm -f "$dir/llama.safetensors"
