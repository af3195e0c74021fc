#!/usr/bin/env bash
# peers.sh - elide against llama.cpp on the same seeded weights (issue 16): the
# benchmark's Llama at each shape is written as safetensors (bench_mkweights), as an
# F32 GGUF file (bench_gguf), quantised by llama-quantize to Q8_0 and Q4_0, and
# compiled by elide at f32, q8 and q4 (--quantize: int8 activations, elide's default
# and llama.cpp's own arithmetic; q8f and q4f: the same weights with
# --activations=f32, the dequantising kernels, against the same Q8_0 / Q4_0 file);
# then ROUNDS rounds, each running llama-bench (decode of NDECODE tokens, prefill of
# NPREFILL, 3 repetitions) and elide's bench_model on the same format and thread
# count back to back.  A ratio is elide tokens/s / llama.cpp tokens/s of one round,
# the figure the median over rounds.  bench_model also measures the read bandwidth
# just before each decode run (best of three): the decode bound in tokens/s is that
# bandwidth over the weight bytes per token of elide's manifest, which are the peer's
# too (llama-quantize --pure: Q8_0 and Q4_0 have elide's q8 and q4 bytes per weight,
# 34 and 18 per 32, in every tensor, lm_head included).  Writes
# BUILD/bench-out/peers.json and prints a table.
#
# llama.cpp comes from the npm package node-llama-cpp, which carries llama.cpp's
# source as a git bundle: installed with --ignore-scripts into BUILD/peers, cloned,
# and llama-bench and llama-quantize built natively (Release, GGML_NATIVE) once,
# cached there; never committed.  Without npm or the network the peer rows are
# skipped with a message.  A prebuilt llama.cpp tree may be put at BUILD/peers/llama.cpp
# (its shared libraries are found through LD_LIBRARY_PATH, whatever its RPATH says).
#   bash bench/peers.sh [BUILD_DIR]
#   (PEER_MODELS="S M", PEER_FORMATS="f32 q8 q4 q8f q4f", PEER_THREADS="1 2", ROUNDS=3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_paths "${1:-}"
P="$BUILD/peers"
NDECODE=${NDECODE:-64}
NPREFILL=${NPREFILL:-128}
ROUNDS=${ROUNDS:-3}
mkdir -p "$P"

LB="$P/llama.cpp/build/bin/llama-bench"
LQ="$P/llama.cpp/build/bin/llama-quantize"
export LD_LIBRARY_PATH="$P/llama.cpp/build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ ! -x $LB || ! -x $LQ ]]; then
	if [[ ! -f $P/node_modules/node-llama-cpp/llama/gitRelease.bundle ]]; then
		if ! (cd "$P" && npm install --ignore-scripts --no-audit --no-fund node-llama-cpp >npm.log 2>&1); then
			echo "peers: npm could not install node-llama-cpp (see $P/npm.log): llama.cpp rows skipped"
			exit 0
		fi
	fi
	[[ -d $P/llama.cpp ]] || git clone -q "$P/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$P/llama.cpp"
	cmake -S "$P/llama.cpp" -B "$P/llama.cpp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
		-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF >"$P/cmake.log"
	cmake --build "$P/llama.cpp/build" --target llama-bench llama-quantize -j "$(nproc)" >"$P/build.log"
fi
echo "== llama.cpp $(cat "$P/node_modules/node-llama-cpp/llama/llama.cpp.info.json" 2>/dev/null | tr -d ' \n')"
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A SHAPE=([S]="288 6 6 6 768 32000 256" [M]="768 12 12 12 2048 32000 1024")
RES="$OUT/peers.tsv"
: >"$RES"
for name in ${PEER_MODELS:-S M}; do
	read -r dim layers heads kvh ffn vocab ctx <<<"${SHAPE[$name]}"
	d="$P/model-$name"
	mkdir -p "$d"
	llama_at_shape "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" >"$d/llama.elide"
	"$BUILD/bench/bench_mkweights" llama "$d/llama.safetensors" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx" 1
	"$BUILD/bench/bench_gguf" "$d/llama.safetensors" "$d/f32.gguf" "$dim" "$layers" "$heads" "$kvh" "$ffn" "$vocab" "$ctx"
	for f in ${PEER_FORMATS:-f32 q8 q4 q8f q4f}; do
		gg="$d/f32.gguf"
		case $f in
		q8*) gg="$d/q8_0.gguf"; [[ -f $gg ]] || "$LQ" --pure "$d/f32.gguf" "$gg" Q8_0 >"$d/quantize.log" 2>&1 ;;
		q4*) gg="$d/q4_0.gguf"; [[ -f $gg ]] || "$LQ" --pure "$d/f32.gguf" "$gg" Q4_0 >"$d/quantize.log" 2>&1 ;;
		esac
		case $f in
		f32) flags="" ;;
		q8 | q4) flags="--quantize=$f" ;;
		q8f | q4f) flags="--quantize=${f%f} --activations=f32" ;;
		*) echo "peers: unknown format '$f' (f32, q8, q4, q8f, q4f)" >&2; exit 2 ;;
		esac
		# shellcheck disable=SC2086
		"$ELIDE" compile "$d/llama.elide" -w "$d/llama.safetensors" -o "$d/out-$f" $flags
		# shellcheck disable=SC2086
		"$CC" -std=c17 -O2 -D_GNU_SOURCE -I"$ROOT" -I"$d/out-$f" "$ROOT/bench/model.c" "$d/out-$f/llama.o" \
			"$RTLIB" -lpthread -lm -o "$d/bench_model-$f"
		bpt=$(tr -d ' \t\n' <"$d/out-$f/llama.json" | grep -o '"name":"step"[^}]*"weight_bytes_per_token":[0-9.e+]*' | grep -o '[0-9.e+]*$')
		for r in $(seq "$ROUNDS"); do
			for th in ${PEER_THREADS:-1 2}; do
				"$LB" -m "$gg" -p "$NPREFILL" -n "$NDECODE" -t "$th" -r 3 -o json >"$d/lb.json" 2>"$d/lb.err"
				python3 - "$d/lb.json" "$name" "$f" "$th" "$r" >>"$RES" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
pp = [x["avg_ts"] for x in rows if x["n_prompt"] > 0 and x["n_gen"] == 0][0]
tg = [x["avg_ts"] for x in rows if x["n_gen"] > 0 and x["n_prompt"] == 0][0]
print(f"llama.cpp\t{sys.argv[2]}\t{sys.argv[3]}\t{sys.argv[4]}\t{sys.argv[5]}\t{tg}\t{pp}\t0\t0")
PY
			done
			"$d/bench_model-$f" "$name" "$d/out-$f/llama.weights" "$NDECODE" "$NPREFILL" "$bpt" "$d/em.json" >/dev/null
			python3 - "$d/em.json" "$name" "$f" "$r" "$bpt" ${PEER_THREADS:-1 2} >>"$RES" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for th in sys.argv[6:]:
    t = m["threads"][th]
    print(f"elide\t{sys.argv[2]}\t{sys.argv[3]}\t{th}\t{sys.argv[4]}\t{t['decode_tokens_per_s']}\t{t['prefill_tokens_per_s']}"
          f"\t{t['paired_read_gbps']}\t{sys.argv[5]}")
PY
		done
		rm -f "$d/out-$f/llama.weights"
	done
	rm -f "$d/llama.safetensors"
done
python3 - "$RES" "$OUT/peers.json" <<'PY'
import json, statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
by = {}
for eng, name, f, th, r, tg, pp, gbps, bpt in rows:
    by.setdefault((name, f, th, r), {})[eng] = (float(tg), float(pp), float(gbps), float(bpt))
res = []
med = statistics.median
print("shape format threads | decode tok/s elide llama.cpp ratio | bound tok/s elide/bound peer/bound |"
      " prefill tok/s elide llama.cpp ratio  (medians over rounds)")
for key in sorted({k[:3] for k in by}):
    rr = [by[k] for k in by if k[:3] == key and len(by[k]) == 2]
    if not rr:
        continue
    e_tg, l_tg = med([x["elide"][0] for x in rr]), med([x["llama.cpp"][0] for x in rr])
    e_pp, l_pp = med([x["elide"][1] for x in rr]), med([x["llama.cpp"][1] for x in rr])
    rd = med([x["elide"][0] / x["llama.cpp"][0] for x in rr])
    rp = med([x["elide"][1] / x["llama.cpp"][1] for x in rr])
    # the read-bandwidth bound of the round: bytes per token over the measured GB/s
    bound = med([x["elide"][2] * 1e9 / x["elide"][3] for x in rr])
    eb = med([x["elide"][0] / (x["elide"][2] * 1e9 / x["elide"][3]) for x in rr])
    lb = med([x["llama.cpp"][0] / (x["elide"][2] * 1e9 / x["elide"][3]) for x in rr])
    print(f"{key[0]:5} {key[1]:6} {key[2]:7} | {e_tg:12.1f} {l_tg:9.1f} {rd:5.2f} | {bound:11.1f} {eb:11.2f} {lb:10.2f} |"
          f" {e_pp:13.1f} {l_pp:9.1f} {rp:5.2f}")
    res.append(dict(shape=key[0], format=key[1], threads=int(key[2]), rounds=len(rr), elide_decode=e_tg,
                    llamacpp_decode=l_tg, decode_ratio=rd, read_bound_decode=bound, elide_decode_vs_bound=eb,
                    llamacpp_decode_vs_bound=lb, elide_prefill=e_pp, llamacpp_prefill=l_pp, prefill_ratio=rp))
json.dump(res, open(sys.argv[2], "w"), indent=1)
print("(llama.cpp: F32, Q8_0, Q4_0 (--pure) of the same weights; elide: f32, q8, q4 with int8 activations (the")
print(" default), q8f and q4f with --activations=f32 against the same Q8_0 / Q4_0; bound: read bandwidth measured")
print(" just before each elide decode run / weight bytes per token; S partly fits in L3, so it can exceed it)")
PY
