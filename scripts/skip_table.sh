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

TOOL=skip_table
THREADS=${ELIDE_THREADS:-1}
. "$(dirname "$0")/lib.sh"
table_setup "${1:-build}" charlm
OUTMD=${2:-}
CTX=256; LAYERS=4
table_require

table_build dense ""
rows=()
# row KIND NAME [knobs]
row() {
	local label=$1 name=$2; shift 2
	local ev bpb lay ffn ntok r tps
	table_eval "$name" "$@"
	ev=$EV bpb=$BPB lay=$LPT ntok=$NTOK
	# FFN blocks run: the layers run less the blocks skipped (stat skip.ffn.layerL)
	ffn=$(printf '%s\n' "$ev" | awk -v n="$ntok" -v lay="$lay" -v L="$LAYERS" \
		'/^stat skip.ffn.layer/ { s += $3 } END { printf "%.3f", (lay * n - s) / (n * L) }')
	read -r r tps < <(table_paired "$name" "$@")
	rows+=("$(printf '| %-8s | %-28s | %6s | %5.3f | %5s | %7s | %5.2fx |' "$label" "${SETTING:-$*}" "$bpb" \
		"$(awk -v l="$lay" -v L="$LAYERS" 'BEGIN { print l / L }')" "$ffn" "$tps" "$r")")
	echo "${rows[-1]}" >&2
}

DENSE_BPB=$(table_score dense | bpb_of)
for s in "4, 4, 256" "4, 3, 256" "4, 2, 256" "4, 2, 128" "4, 1, 256" "4, 1, 64"; do
	n="sched_${s//[^0-9]/_}"
	table_build "$n" "skip schedule linear($s);"
	SETTING="linear($s)" row schedule "$n"
done
table_build ffn "skip ffn when cos(in, out) > 1;"
for t in 1.5 0.99 0.98 0.95 0.9 0.8; do row ffn ffn "skip.ffn.threshold=$t"; done
table_build router "skip layers from router buckets 3 calibrate \"train_sample.txt\";"
for b in 0 1 2; do row router router "skip.bucket=$b"; done

{
	echo "| kind | setting | bits/byte | layers run | FFN blocks run | tokens/s | speed-up |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Dense: $DENSE_BPB bits/byte.  $THREADS thread(s), $RUNS paired runs per row; held-out text $(basename "$HELD"), chunks of $CTX bytes."
} | tee "${OUTMD:-/dev/null}"
