#!/usr/bin/env bash
# skip_table.sh - layer skipping on the trained example model examples/charlm (4
# layers): SkipDecode schedules linear(4, n_min, c) (one compile each), FFN skipping
# compiled once and swept through the knob skip.ffn.threshold, and the router's
# buckets forced through the knob skip.bucket (--eval scores from an empty context
# with steps, so no prefill chooses a route).  Each row: held-out bits per byte
# (compiled code, chunks of CTX bytes), the fraction of layers and of FFN blocks run
# per token, decode tokens/s, and the paired speed-up over the dense model (the two
# scored in alternation, the median of RUNS pairs).  The first row of each kind is
# its neutral setting.
#   bash scripts/skip_table.sh [BUILD_DIR] [OUT.md]   (after make build)
set -euo pipefail

BUILD=${1:-build}
MODEL=charlm
OUTMD=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
SRC="$ROOT/examples/$MODEL"
ELIDE="$BUILD/tools/elide"
CC=${CC:-cc}
THREADS=${ELIDE_THREADS:-1}
RUNS=${RUNS:-3}
HELD="$SRC/heldout_4k.txt"; CTX=256; LAYERS=4
UP=$(echo "$MODEL" | tr a-z A-Z)
for f in "$ELIDE" "$SRC/$MODEL.elide" "$SRC/$MODEL.safetensors" "$HELD" "$BUILD/runtime/libelide_rt.a"; do
	[ -e "$f" ] || { echo "skip_table: missing $f (build first: make build)" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# build NAME "STATEMENT": the model with the statement as policy t, linked with the driver
build() {
	local d="$TMP/$1"
	mkdir -p "$d/out"
	{ cat "$SRC/$MODEL.elide"; printf '\npolicy t for %s {\n  %s\n}\n' "$MODEL" "$2"; } >"$d/m.elide"
	if [ -n "$2" ]; then pol="--policy t"; else pol=""; fi
	(cd "$SRC" && "$ELIDE" compile "$d/m.elide" -w "$SRC/$MODEL.safetensors" $pol -o "$d/out" >"$d/log" 2>&1) ||
		{ cat "$d/log" >&2; echo "skip_table: compiling '$1' failed" >&2; exit 1; }
	$CC -O2 -I"$d/out" -I"$ROOT" -DMODEL="$MODEL" -DMODEL_UPPER="$UP" -DMODEL_HEADER="\"$MODEL.h\"" \
		-DCHARLM_DEFAULT_WEIGHTS="\"$d/out/$MODEL.weights\"" "$ROOT/examples/charlm/main.c" "$d/out/$MODEL.o" \
		"$BUILD/runtime/libelide_rt.a" -lm -lpthread -o "$d/run"
}
# score NAME [KNOB=V]: the driver's --eval output
score() {
	local d="$TMP/$1"; shift
	local k=()
	for a in "$@"; do k+=(--knob "$a"); done
	"$d/run" -w "$d/out/$MODEL.weights" --eval "$HELD" --ctx "$CTX" --threads "$THREADS" "${k[@]}"
}
tps_of() { sed -n 's/.*, \([0-9.]*\) tokens\/s).*/\1/p'; }

build dense ""
rows=()
# row KIND NAME [knobs]
row() {
	local label=$1 name=$2; shift 2
	local ev ratios=() bpb lay ffn tps r ntok
	ev=$(score "$name" "$@")
	bpb=$(printf '%s\n' "$ev" | sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p')
	lay=$(printf '%s\n' "$ev" | sed -n 's/^layers-per-token \([0-9.]*\).*/\1/p')
	ntok=$(printf '%s\n' "$ev" | sed -n 's/^bits-per-byte [0-9.]* (\([0-9]*\) bytes.*/\1/p')
	# FFN blocks run: the layers run less the blocks skipped (stat skip.ffn.layerL)
	ffn=$(printf '%s\n' "$ev" | awk -v n="$ntok" -v lay="$lay" -v L="$LAYERS" \
		'/^stat skip.ffn.layer/ { s += $3 } END { printf "%.3f", (lay * n - s) / (n * L) }')
	for i in $(seq "$RUNS"); do
		local td tv
		td=$(score dense | tps_of)
		tv=$(score "$name" "$@" | tps_of)
		ratios+=("$(awk -v a="$tv" -v b="$td" 'BEGIN { print a / b }')")
		tps=$tv
	done
	r=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	rows+=("$(printf '| %-8s | %-28s | %6s | %5.3f | %5s | %7s | %5.2fx |' "$label" "${SETTING:-$*}" "$bpb" \
		"$(awk -v l="$lay" -v L="$LAYERS" 'BEGIN { print l / L }')" "$ffn" "$tps" "$r")")
	echo "${rows[-1]}" >&2
}

DENSE_BPB=$(score dense | sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p')
for s in "4, 4, 256" "4, 3, 256" "4, 2, 256" "4, 2, 128" "4, 1, 256" "4, 1, 64"; do
	n="sched_${s//[^0-9]/_}"
	build "$n" "skip schedule linear($s);"
	SETTING="linear($s)" row schedule "$n"
done
build ffn "skip ffn when cos(in, out) > 1;"
for t in 1.5 0.99 0.98 0.95 0.9 0.8; do row ffn ffn "skip.ffn.threshold=$t"; done
build router "skip layers from router buckets 3 calibrate \"train_sample.txt\";"
for b in 0 1 2; do row router router "skip.bucket=$b"; done

{
	echo "| kind | setting | bits/byte | layers run | FFN blocks run | tokens/s | speed-up |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Dense: $DENSE_BPB bits/byte.  $THREADS thread(s), $RUNS paired runs per row; held-out text $(basename "$HELD"), chunks of $CTX bytes."
} | tee "${OUTMD:-/dev/null}"
