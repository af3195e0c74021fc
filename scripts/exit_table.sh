#!/usr/bin/env bash
# exit_table.sh - early exit on a trained example model (examples/charlm, or charlm8):
# for each confidence measure (margin, maxprob, entropy, state_cos; and patience)
# the model is compiled once with exit sites after every layer but the last
# (`exit at ... kv propagate`), and the threshold is swept through the run-time knob
# (`--knob exit.threshold=T`, no recompile).  Each row: held-out bits per byte
# (compiled code, chunks of CTX bytes from an empty context), average layers run per
# token, the share of tokens leaving at each site, decode tokens/s, and the paired
# speed-up over the dense model (the two scored in alternation, the median of RUNS
# pairs).  The first row of each measure is its neutral setting (no token exits).
#   bash scripts/exit_table.sh [BUILD_DIR] [charlm|charlm8] [OUT.md]   (after make build)
set -euo pipefail

BUILD=${1:-build}
MODEL=${2:-charlm}
OUTMD=${3:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
SRC="$ROOT/examples/$MODEL"
ELIDE="$BUILD/tools/elide"
CC=${CC:-cc}
THREADS=${ELIDE_THREADS:-1}
RUNS=${RUNS:-3}
case "$MODEL" in
charlm) SITES="1, 2, 3"; HELD="$SRC/heldout_4k.txt"; CTX=256 ;;
charlm8) SITES="1, 2, 3, 4, 5, 6, 7"; HELD="$SRC/heldout_4k.txt"; CTX=1024 ;;
*) echo "exit_table: unknown model '$MODEL' (charlm or charlm8)" >&2; exit 2 ;;
esac
UP=$(echo "$MODEL" | tr a-z A-Z)
if [ "$MODEL" = charlm8 ] && [ ! -e "$HELD" ]; then
	HELD="$(mktemp -d)/first_4k_of_heldout_16k.txt"; head -c 4096 "$SRC/heldout_16k.txt" >"$HELD"
fi
for f in "$ELIDE" "$SRC/$MODEL.elide" "$SRC/$MODEL.safetensors" "$HELD" "$BUILD/runtime/libelide_rt.a"; do
	[ -e "$f" ] || { echo "exit_table: missing $f (build first: make build)" >&2; exit 1; }
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
		{ cat "$d/log" >&2; echo "exit_table: compiling '$1' failed" >&2; exit 1; }
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
# row MEASURE NAME THRESHOLD [extra knobs]
row() {
	local label=$1 name=$2; shift 2
	local ev ratios=() bpb lay sites tps r
	ev=$(score "$name" "$@")
	bpb=$(printf '%s\n' "$ev" | sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p')
	lay=$(printf '%s\n' "$ev" | sed -n 's/^layers-per-token \([0-9.]*\).*/\1/p')
	local ntok
	ntok=$(printf '%s\n' "$ev" | sed -n 's/^bits-per-byte [0-9.]* (\([0-9]*\) bytes.*/\1/p')
	sites=$(printf '%s\n' "$ev" | awk -v n="$ntok" '/^stat exit.site/ { sub("exit.site", "", $2); printf "%s%s: %.1f%%", sep, $2, 100 * $3 / n; sep = ", " }')
	for i in $(seq "$RUNS"); do
		local td tv
		td=$(score dense | tps_of)
		tv=$(score "$name" "$@" | tps_of)
		ratios+=("$(awk -v a="$tv" -v b="$td" 'BEGIN { print a / b }')")
		tps=$tv
	done
	r=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	rows+=("$(printf '| %-10s | %-18s | %6s | %5s | %-34s | %7s | %5.2fx |' "$label" "$*" "$bpb" "$lay" "$sites" "$tps" "$r")")
	echo "${rows[-1]}" >&2
}

DENSE_BPB=$(score dense | sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p')
build margin "exit at $SITES head head measure margin threshold 1 kv propagate;"
for t in 1 0.9 0.8 0.6 0.4 0.2; do row margin margin "exit.threshold=$t"; done
build maxprob "exit at $SITES head head measure maxprob threshold 1 kv propagate;"
for t in 1 0.95 0.9 0.8 0.6 0.4; do row maxprob maxprob "exit.threshold=$t"; done
build entropy "exit at $SITES head head measure entropy threshold 0 kv propagate;"
for t in 0 0.5 1 1.5 2 3; do row entropy entropy "exit.threshold=$t"; done
build state_cos "exit at $SITES head head measure state_cos threshold 1 kv propagate;"
for t in 1 0.99 0.98 0.95 0.9 0.8; do row state_cos state_cos "exit.threshold=$t"; done
build patience "exit at $SITES head head patience 9 kv propagate;"
for t in 9 4 3 2 1; do row patience patience "exit.patience=$t"; done

{
	echo "| measure | setting | bits/byte | layers/token | tokens leaving at each site (after N layers) | tokens/s | speed-up |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Dense: $DENSE_BPB bits/byte.  $THREADS thread(s), $RUNS paired runs per row; held-out text $(basename "$HELD"), chunks of $CTX bytes."
} | tee "${OUTMD:-/dev/null}"
