#!/usr/bin/env bash
# quant_table.sh - held-out bits per byte of the trained example model
# (examples/charlm) with quantised weights: f32, bf16, q8, q4, q4 with the first and
# last layers at q8, and q8/q4 with --int8-activations.  Each variant is compiled by
# `elide compile` (the policy's quantize statements, or none for f32), linked with
# examples/charlm/main.c and scored with `--eval examples/charlm/heldout_4k.txt`
# (chunks of ctx bytes from an empty context, as train.py scores); the blob size
# comes from the weights file.
#   bash scripts/quant_table.sh [BUILD_DIR] [OUT.md]      (after `make build`)
set -euo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
OUTMD=${2:-}
CH="$ROOT/examples/charlm"
ELIDE="$BUILD/tools/elide"
CC=${CC:-cc}
THREADS=${ELIDE_THREADS:-2}
for f in "$ELIDE" "$CH/charlm.elide" "$CH/charlm.safetensors" "$CH/main.c" "$CH/heldout_4k.txt" \
	"$BUILD/runtime/libelide_rt.a"; do
	[ -e "$f" ] || { echo "quant_table: missing $f (build first: make build)" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# variant NAME "STATEMENTS" [FLAGS]: compile, link, score; prints "bpb blob-bytes"
variant() {
	local name=$1 stmt=$2 flags=${3:-} d="$TMP/$1"
	mkdir -p "$d/out"
	{ cat "$CH/charlm.elide"; printf '\npolicy t for charlm {\n  %s\n}\n' "$stmt"; } >"$d/m.elide"
	# shellcheck disable=SC2086
	if ! "$ELIDE" compile "$d/m.elide" -w "$CH/charlm.safetensors" --policy t -o "$d/out" $flags >"$d/log" 2>&1; then
		cat "$d/log" >&2
		echo "quant_table: compiling '$name' failed" >&2
		return 1
	fi
	$CC -O2 -I"$d/out" -I"$ROOT" -DCHARLM_DEFAULT_WEIGHTS="\"$d/out/charlm.weights\"" "$CH/main.c" \
		"$d/out/charlm.o" "$BUILD/runtime/libelide_rt.a" -lm -lpthread -o "$d/charlm"
	local bpb
	bpb=$("$d/charlm" -w "$d/out/charlm.weights" --eval "$CH/heldout_4k.txt" --threads "$THREADS" |
		sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p')
	echo "$bpb $(stat -c %s "$d/out/charlm.weights")"
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
row "q8, int8 activations" "quantize weights q8;" --int8-activations
row "q4, int8 activations" "quantize weights q4;" --int8-activations

{
	echo "charlm held-out bits per byte (examples/charlm/heldout_4k.txt), compiled, $THREADS thread(s);"
	echo "groups of 32 (the default); blob: the weights file against f32's"
	echo
	echo "| variant                      | statements                                                     |     bpb |      blob | ratio |"
	echo "|------------------------------|----------------------------------------------------------------|---------|-----------|-------|"
	for r in "${rows[@]}"; do echo "$r"; done
} | tee ${OUTMD:+"$OUTMD"}
