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

TOOL=exit_table
THREADS=${ELIDE_THREADS:-1}
. "$(dirname "$0")/lib.sh"
table_setup "${1:-build}" "${2:-charlm}"
OUTMD=${3:-}
case "$MODEL" in
charlm) SITES="1, 2, 3"; CTX=256 ;;
charlm8) SITES="1, 2, 3, 4, 5, 6, 7"; CTX=1024 ;;
*) echo "exit_table: unknown model '$MODEL' (charlm or charlm8)" >&2; exit 2 ;;
esac
if [ "$MODEL" = charlm8 ] && [ ! -e "$HELD" ]; then
	HELD="$TMP/first_4k_of_heldout_16k.txt"; head -c 4096 "$SRC/heldout_16k.txt" >"$HELD"
fi
table_require

table_build dense ""
rows=()
# row MEASURE NAME [knobs]
row() {
	local label=$1 name=$2; shift 2
	local ev bpb lay sites ntok r tps
	table_eval "$name" "$@"
	ev=$EV bpb=$BPB lay=$LPT ntok=$NTOK
	sites=$(printf '%s\n' "$ev" | awk -v n="$ntok" '/^stat exit.site/ { sub("exit.site", "", $2); printf "%s%s: %.1f%%", sep, $2, 100 * $3 / n; sep = ", " }')
	read -r r tps < <(table_paired "$name" "$@")
	rows+=("$(printf '| %-10s | %-18s | %6s | %5s | %-34s | %7s | %5.2fx |' "$label" "$*" "$bpb" "$lay" "$sites" "$tps" "$r")")
	echo "${rows[-1]}" >&2
}

DENSE_BPB=$(table_score dense | bpb_of)
table_build margin "exit at $SITES head head measure margin threshold 1 kv propagate;"
for t in 1 0.9 0.8 0.6 0.4 0.2; do row margin margin "exit.threshold=$t"; done
table_build maxprob "exit at $SITES head head measure maxprob threshold 1 kv propagate;"
for t in 1 0.95 0.9 0.8 0.6 0.4; do row maxprob maxprob "exit.threshold=$t"; done
table_build entropy "exit at $SITES head head measure entropy threshold 0 kv propagate;"
for t in 0 0.5 1 1.5 2 3; do row entropy entropy "exit.threshold=$t"; done
table_build state_cos "exit at $SITES head head measure state_cos threshold 1 kv propagate;"
for t in 1 0.99 0.98 0.95 0.9 0.8; do row state_cos state_cos "exit.threshold=$t"; done
table_build patience "exit at $SITES head head patience 9 kv propagate;"
for t in 9 4 3 2 1; do row patience patience "exit.patience=$t"; done

{
	echo "| measure | setting | bits/byte | layers/token | tokens leaving at each site (after N layers) | tokens/s | speed-up |"
	echo "|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Dense: $DENSE_BPB bits/byte.  $THREADS thread(s), $RUNS paired runs per row; held-out text $(basename "$HELD"), chunks of $CTX bytes."
} | tee "${OUTMD:-/dev/null}"
