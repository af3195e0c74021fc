#!/usr/bin/env bash
# qkernel.sh - the quantised linear kernels alone: bench/kernel.c on a one-linear
# model W[N, K] compiled at each format (f32, bf16, q8, q4 with int8 activations,
# the default; q8f and q4f with --activations=f32), GEMV (decode) and GEMM over T
# rows (prefill), 1 and 2 threads.
# Prints GFLOPS and, for the GEMV, the weight bytes streamed per second (GB/s of
# the format's bytes: f32 4, bf16 2, q8 34/32, q4 18/32 per weight), so that a
# kernel is compared with the read bandwidth and with the other formats at once.
# Shapes: "ffn" 2048 x 768 (fits in L2/L3: the kernel's arithmetic cost) and "head"
# 32000 x 768 (the output projection of S and M: streamed).
#   bash bench/qkernel.sh [BUILD_DIR]   (QK_SHAPES="ffn:2048:768 head:32000:768",
#   QK_FORMATS="f32 q8 q4 q8f q4f", QK_T=128)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
OUT="$BUILD/bench-out/qkernel"
ELIDE="$BUILD/tools/elide"
CC="${CC:-cc}"
T=${QK_T:-128}
mkdir -p "$OUT"
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-5s %6s %6s | %8s %8s %7s %7s | %8s %8s\n' shape fmt n k "gemv 1t" "gemv 2t" "GB/s 1t" "GB/s 2t" \
	"gemm 1t" "gemm 2t"
for s in ${QK_SHAPES:-ffn:2048:768 head:32000:768}; do
	IFS=: read -r name n k <<<"$s"
	dir="$OUT/$name"
	mkdir -p "$dir"
	kern_model "$n" "$k" "$T" >"$dir/kern.elide"
	"$BUILD/bench/bench_mkweights" linear "$dir/kern.safetensors" "$n" "$k" 8 1
	for f in ${QK_FORMATS:-f32 q8 q4 q8f q4f}; do
		case $f in
		f32) flags="" ;;
		q8f | q4f) flags="--quantize=${f%f} --activations=f32" ;;
		*) flags="--quantize=$f" ;;
		esac
		# shellcheck disable=SC2086
		"$ELIDE" compile "$dir/kern.elide" -w "$dir/kern.safetensors" -o "$dir/out-$f" $flags
		"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$dir/out-$f" "$ROOT/bench/kernel.c" "$dir/out-$f/kern.o" \
			"$BUILD/runtime/libelide_rt.a" -lpthread -lm -o "$dir/bench_kernel-$f"
		"$dir/bench_kernel-$f" "$name-$f" "$dir/out-$f/kern.weights" "$T" "$dir/$f.json" >/dev/null
		python3 - "$dir/$f.json" "$name" "$f" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
bpw = {"f32": 4, "bf16": 2, "q8": 34 / 32, "q4": 18 / 32, "q8f": 34 / 32, "q4f": 18 / 32}[sys.argv[3]]
gv, gm = j["gemv_gflops"], j["gemm_gflops"]
print(f"{sys.argv[2]:6} {sys.argv[3]:5} {j['n']:6} {j['k']:6} | {gv['1']:8.1f} {gv['2']:8.1f} "
      f"{gv['1'] / 2 * bpw:7.1f} {gv['2'] / 2 * bpw:7.1f} | {gm['1']:8.1f} {gm['2']:8.1f}")
PY
	done
	rm -f "$dir/kern.safetensors"
done
