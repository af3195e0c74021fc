#!/usr/bin/env bash
# quant_table.sh - held-out bits per byte of the trained example model
# (examples/charlm) with quantised weights: f32, bf16, q8, q4 (int8 activations, the
# default for q8 and q4), q4 with the first and last layers at q8, q4 with the
# embedding and output projection at q8, and q8/q4 with f32 activations
# (`activations f32`).  Each variant is compiled by
# `elide compile` (the policy's quantize statements, or none for f32), linked with
# examples/charlm/main.c and scored with `--eval examples/charlm/heldout_4k.txt`
# (chunks of ctx bytes from an empty context, as train.py scores); the blob size
# comes from the weights file.
#   bash scripts/quant_table.sh [BUILD_DIR] [OUT.md]      (after `make build`)
set -euo pipefail

TOOL=quant_table
THREADS=${ELIDE_THREADS:-2}
. "$(dirname "$0")/lib.sh"
table_setup "${1:-build}" charlm
OUTMD=${2:-}
table_require

# variant NAME "STATEMENTS" [FLAGS]: compile, link, score; prints "bpb blob-bytes"
variant() {
	local name=$1 stmt=$2 flags=${3:-}
	# shellcheck disable=SC2086
	table_build "$name" "$stmt" $flags
	echo "$(table_score "$name" | bpb_of) $(stat -c %s "$TMP/$name/out/charlm.weights")"
}

rows=()
F32_BLOB=
row() {
	local name=$1 stmt=$2 flags=${3:-} b s
	read -r b s < <(variant "$name" "$stmt" "$flags")
	[ -n "$F32_BLOB" ] || F32_BLOB=$s
	rows+=("$(printf '| %-28s | %-62s | %7s | %9s | %5.3f |' "$name" "$stmt${flags:+ ($flags)}" "$b" "$s" \
		"$(awk -v a="$s" -v b="$F32_BLOB" 'BEGIN { print a / b }')")")
	echo "${rows[-1]}" >&2
}

row f32 ""
row bf16 "quantize weights bf16;"
row q8 "quantize weights q8;"
row q4 "quantize weights q4;"
row "q4, layers 0 and 3 at q8" "quantize weights q4; quantize weights q8 layers 0..1; quantize weights q8 layers 3..4;"
row "q4, embed and lm_head at q8" "quantize weights q4; quantize weights q8 except wq, wk, wv, wo, w1, w2, w3;"
row "q8, f32 activations" "quantize weights q8 activations f32;"
row "q4, f32 activations" "quantize weights q4 activations f32;"

{
	echo "charlm held-out bits per byte (examples/charlm/heldout_4k.txt), compiled, $THREADS thread(s);"
	echo "groups of 32 (the default); q8 and q4 with int8 activations unless the row says f32;"
	echo "blob: the weights file against f32's"
	echo
	echo "| variant                      | statements                                                     |     bpb |      blob | ratio |"
	echo "|------------------------------|----------------------------------------------------------------|---------|-----------|-------|"
	for r in "${rows[@]}"; do echo "$r"; done
} | tee ${OUTMD:+"$OUTMD"}
