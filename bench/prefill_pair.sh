#!/usr/bin/env bash
# prefill_pair.sh - elide's f32 prefill of one build against another's (before/after a
# change to the kernels), paired in one script: the benchmark's Llama at shape S or M
# (bench/ortpeer.sh's shapes and seeded weights) is compiled by each build's elide and
# linked into bench_prefill (prefill.c); bench/prefill_pair.py then runs ROUNDS
# rounds of one NPREFILL-token prefill in each, the order rotating, and prints the
# median seconds of each and the median of the per-round ratios (B's speed over A's).
#   bash bench/prefill_pair.sh BUILD_A BUILD_B [SHAPE] [THREADS]
#   (SHAPE S or M, default M; THREADS default 1; ROUNDS=9, NPREFILL=128;
#    CPU_TIME=1 times the process CPU time instead of the wall time: steadier on a
#    loaded machine, meaningful at 1 thread only; A_FLAGS and B_FLAGS are added to
#    each side's `elide compile`, so one build can be paired with itself:
#    A_FLAGS=--no-pass=row-sink bash bench/prefill_pair.sh build build M)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
A="$(cd "$1" && pwd)"
B="$(cd "$2" && pwd)"
name=${3:-M}
th=${4:-1}
CC="${CC:-cc}"
declare -A SHAPE=([S]="288 6 6 6 768 32000 256" [M]="768 12 12 12 2048 32000 1024")
[[ -n ${SHAPE[$name]:-} ]] || { echo "prefill_pair.sh: shape must be S or M" >&2; exit 2; }
read -r dim layers heads kvh ffn vocab ctx <<<"${SHAPE[$name]}"
W="$B/bench-out/pair-$name"
mkdir -p "$W"
llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" >"$W/llama.elide"
[[ -x $B/bench/bench_mkweights ]] || cmake --build "$B" --target bench_mkweights >/dev/null
"$B/bench/bench_mkweights" llama "$W/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
timer=""
[[ ${CPU_TIME:-0} == 1 ]] && timer="-DPAIR_CPU_TIME"
for side in A B; do
	bd=${!side}
	mkdir -p "$W/$side"
	flags="${side}_FLAGS"
	# shellcheck disable=SC2086 # the flags are words
	"$bd/tools/elide" compile "$W/llama.elide" -w "$W/llama.safetensors" -o "$W/$side/out" ${!flags:-}
	"$CC" -std=c17 -O2 -D_GNU_SOURCE $timer -I"$ROOT" -I"$W/$side/out" "$ROOT/bench/prefill.c" "$W/$side/out/llama.o" \
		"$bd/runtime/libelide_rt.a" -lpthread -lm -o "$W/$side/bench_prefill"
done
rm -f "$W/llama.safetensors"
echo "== elide prefill, $name, $th thread(s), ${NPREFILL:-128} tokens: A $A ${A_FLAGS:-}, B $B ${B_FLAGS:-}; load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$ROOT/bench/prefill_pair.py" "$th" "${ROUNDS:-9}" "${NPREFILL:-128}" "$W/A" "$W/B"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
