#!/usr/bin/env bash
# sparse_table.sh - sparse attention on charlm8 (examples/charlm8, context 1024): held-out
# bits per byte of heldout_16k.txt in chunks of 1024 bytes, each from an empty context.
# Decode rows: each `attend decode` statement compiled, linked with main.c and scored by
# --eval (every byte a step, positions 0..1022), with the share of KV positions read (from
# the selection rule), tokens/s and the paired speed-up over dense (RUNS pairs on the first
# TIME_BYTES bytes).  Prefill rows: `attend prefill` in the interpreter, on a copy of the
# model whose prefill returns every row's logits.  Only the lines between OUT.md's marker
# comments are replaced (a file without them is written whole).
#   bash scripts/sparse_table.sh [BUILD_DIR] [OUT.md]        (after make build)
# Environment: ELIDE_THREADS (1), RUNS (3), TIME_BYTES (4096), PREFILL (1: prefill rows; 0
# keeps OUT.md's prefill rows, if it has some, marked as kept), HELD.
set -euo pipefail

BUILD=${1:-build}
OUTMD=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
SRC="$ROOT/examples/charlm8"
HELD=${HELD:-$SRC/heldout_16k.txt}      # HELD=FILE: another text (a quick check)
ELIDE="$BUILD/tools/elide"
CC=${CC:-cc}
THREADS=${ELIDE_THREADS:-1}
RUNS=${RUNS:-3}
TIME_BYTES=${TIME_BYTES:-4096}
PREFILL=${PREFILL:-1}
CTX=1024 LAYERS=8
for f in "$ELIDE" "$SRC/charlm8.elide" "$SRC/charlm8.safetensors" "$HELD" "$BUILD/runtime/libelide_rt.a"; do
	[ -e "$f" ] || { echo "sparse_table: missing $f (build first: make build)" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
head -c "$TIME_BYTES" "$HELD" >"$TMP/time.txt"
NBYTES=$(stat -c %s "$HELD")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
BEGIN="<!-- tables by scripts/sparse_table.sh: begin -->" END="<!-- tables by scripts/sparse_table.sh: end -->"

# policy FILE "STATEMENT" [MODEL_SRC]: the model with the statement as policy t
policy() { { cat "${3:-$SRC/charlm8.elide}"; printf '\npolicy t for charlm8 {\n  %s\n}\n' "$2"; } >"$1"; }

# build NAME "STATEMENT": compiled with the statement (none: dense), linked with the driver
build() {
	local d="$TMP/$1" pol=()
	mkdir -p "$d/out"
	policy "$d/m.elide" "$2"
	[ -z "$2" ] || pol=(--policy t)
	(cd "$SRC" && "$ELIDE" compile "$d/m.elide" -w charlm8.safetensors "${pol[@]}" -o "$d/out" >"$d/log" 2>&1) ||
		{ cat "$d/log" >&2; echo "sparse_table: compiling '$1' failed" >&2; exit 1; }
	$CC -O2 -I"$d/out" -I"$ROOT" -DMODEL=charlm8 -DMODEL_UPPER=CHARLM8 -DMODEL_HEADER='"charlm8.h"' \
		"$ROOT/examples/charlm/main.c" "$d/out/charlm8.o" "$BUILD/runtime/libelide_rt.a" -lm -lpthread -o "$d/run"
}
# score NAME FILE [KNOB=V]: the driver's --eval output
score() {
	local d="$TMP/$1" file=$2 k=()
	shift 2
	for a in "$@"; do k+=(--knob "$a"); done
	"$d/run" -w "$d/out/charlm8.weights" --eval "$file" --ctx "$CTX" --threads "$THREADS" "${k[@]}"
}
field() { sed -n "s/^$1 \([0-9a-f.]*\).*/\1/p"; }
tps_of() { sed -n 's/.*, \([0-9.]*\) tokens\/s).*/\1/p'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# kv_read P B S W NDENSE: the share of KV positions attention reads over the scored
# positions of the held-out chunks (query at n - 1 sees n keys), by the rule of
# docs/sparse.md: sink pages, window pages (the current one always) and K = max(3,
# B/P) pages between (B 0: none); all pages when no more than K lie between.
# Prints "sparse-layers all-layers at-1023" (the last: one sparse layer, n = 1024).
kv_read() {
	awk -v P="$1" -v B="$2" -v S="$3" -v W="$4" -v D="$5" -v L="$LAYERS" -v N="$NBYTES" -v C="$CTX" '
	function rd(n,  np, K, sp, wp) {
		np = int((n + P - 1) / P); K = B == 0 ? 0 : (int(B / P) > 3 ? int(B / P) : 3)
		sp = int((S + P - 1) / P); if (sp > np) sp = np
		wp = W > 0 ? (n > W ? int((n - W) / P) : 0) : np - 1
		if (wp > np - 1) wp = np - 1
		if (wp < sp) wp = sp
		return wp - sp <= K ? n : sp * P + K * P + (n - wp * P)
	}
	BEGIN {
		for (s = 0; s < N; s += C) {
			len = N - s < C ? N - s : C
			for (i = 0; i + 1 < len; i++) { r += rd(i + 1); a += i + 1 }
		}
		f = r / a
		printf "%.3f %.3f %.3f\n", f, (D + (L - D) * f) / L, rd(C) / C
	}'
}

rows=()
DENSE_BPB="" DENSE_HASH=""
# row LABEL NAME "P B S W NDENSE" [KNOB=V]: one decode row
row() {
	local label=$1 name=$2 kv=$3 ev bpb hash ratios=() tps=() r t f1 f2 f3
	shift 3
	ev=$(score "$name" "$HELD" "$@")
	bpb=$(printf '%s\n' "$ev" | field bits-per-byte)
	hash=$(printf '%s\n' "$ev" | field logits-fnv1a)
	[ -n "$DENSE_BPB" ] || { DENSE_BPB=$bpb; DENSE_HASH=$hash; }
	# shellcheck disable=SC2086 # kv: the five words kv_read takes
	read -r f1 f2 f3 < <(if [ -n "$kv" ]; then kv_read $kv; else echo "1.000 1.000 1.000"; fi)
	for _ in $(seq "$RUNS"); do
		local td tv
		td=$(score dense "$TMP/time.txt" | tps_of)
		tv=$(score "$name" "$TMP/time.txt" "$@" | tps_of)
		ratios+=("$(awk -v a="$tv" -v b="$td" 'BEGIN { print a / b }')")
		tps+=("$tv")
	done
	r=$(printf '%s\n' "${ratios[@]}" | median)
	t=$(printf '%s\n' "${tps[@]}" | median)
	HASH[$label]=$hash
	rows+=("$(printf '| %-40s | %6s | %+7.4f | %5s | %5s | %5s | %6.1f | %5.2fx | %s |' "$label" "$bpb" \
		"$(awk -v a="$bpb" -v b="$DENSE_BPB" 'BEGIN { print a - b }')" "$f1" "$f2" "$f3" "$t" "$r" "$hash")")
	echo "${rows[-1]}" >&2
}
declare -A HASH

build dense ""
row "dense" dense ""
build q1024 "attend decode quest(page 16, budget 1024);"
row "quest(page 16, budget 1024)" q1024 "16 1024 0 0 0"
for b in 512 256 128 64 32; do
	build "q$b" "attend decode quest(page 16, budget $b);"
	row "quest(page 16, budget $b)" "q$b" "16 $b 0 0 0"
done
for p in 8 32; do
	build "p$p" "attend decode quest(page $p, budget 128);"
	row "quest(page $p, budget 128)" "p$p" "$p 128 0 0 0"
done
build sw "attend decode sinks 4 window 64;"
row "sinks 4 window 64 (no pages)" sw "16 0 4 64 0"
for b in 256 64 32; do
	build "sw$b" "attend decode quest(page 16, budget $b) sinks 4 window 64;"
	row "quest(16, $b) sinks 4 window 64" "sw$b" "16 $b 4 64 0"
done
build d0 "attend decode quest(page 16, budget 64) dense_layers 0;"
row "quest(16, 64) dense_layers 0" d0 "16 64 0 0 1"
build d01 "attend decode quest(page 16, budget 64) sinks 4 window 64 dense_layers 0, 1;"
row "quest(16, 64) s4 w64 dense_layers 0, 1" d01 "16 64 4 64 2"
build qpol "attend decode quest(page 16, budget 256) sinks 4 window 64 dense_layers 0, 1;"
row "quest(16, 256) s4 w64 dense_layers 0, 1" qpol "16 256 4 64 2"
row "quest(16, 512), knob budget=64" q512 "16 64 0 0 0" attend.budget=64
KNOB_OK=no
[ "${HASH[quest(16, 512), knob budget=64]}" = "${HASH[quest(page 16, budget 64)]}" ] && KNOB_OK=yes
BUDGET_OK=no
[ "${HASH[quest(page 16, budget 1024)]}" = "$DENSE_HASH" ] && BUDGET_OK=yes

# --- prefill (interpreter): a model whose prefill returns every row's logits ---
prows=()
if [ "$PREFILL" = 1 ]; then
	sed -e 's/^\(  entry prefill(tokens: i32\[<=ctx\], pos: i32) -> \)f32\[vocab\]/\1f32[<=ctx, vocab]/' \
		-e 's/^    return head(row(x, -1));/    return linear(rmsnorm(x, norm, eps = 1e-5), lm_head);/' \
		"$SRC/charlm8.elide" >"$TMP/all_rows.elide"
	if ! grep -q 'f32\[<=ctx, vocab\]' "$TMP/all_rows.elide" || ! grep -q 'return linear(rmsnorm(x, norm' "$TMP/all_rows.elide"; then
		echo "sparse_table: charlm8.elide's prefill entry is not the one this script rewrites" >&2
		exit 1
	fi
	split -b "$CTX" -d -a 3 "$HELD" "$TMP/chunk."
	# prow LABEL "STATEMENT" "BLOCK TOPK NDENSE"|WORD: WORD is the KV column as is: score every chunk's prefill logits
	prow() {
		local d="$TMP/pf$((${#prows[@]}))" bits=0 n=0 c out
		mkdir -p "$d"
		policy "$d/m.elide" "$2" "$TMP/all_rows.elide"
		"$ELIDE" opt "$d/m.elide" --policy t --passes=sparse-attention >"$d/m.eir" 2>"$d/log" ||
			{ cat "$d/log" >&2; echo "sparse_table: elide opt '$1' failed" >&2; exit 1; }
		local t0=$SECONDS
		for c in "$TMP"/chunk.*; do
			"$ELIDE" run --interp "$d/m.eir" -w "$SRC/charlm8.safetensors" --prefill \
				--tokens "$(od -An -v -tu1 "$c" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')" \
				--dump-logits "$d/l.f32" >"$d/run.log" 2>&1 ||
				{ cat "$d/run.log" >&2; echo "sparse_table: prefill '$1' failed" >&2; exit 1; }
			# bits of byte i+1 under row i's logits, rows 0 .. len-2
			od -An -v -tu1 -w1 "$c" >"$d/bytes"
			out=$(od_rows "$d/l.f32" "$d/bytes")
			bits=$(awk -v a="$bits" -v b="${out% *}" 'BEGIN { printf "%.9f", a + b }')
			n=$((n + ${out#* }))
		done
		local bpb f
		bpb=$(awk -v b="$bits" -v n="$n" 'BEGIN { printf "%.4f", b / n }')
		[ -n "${PDENSE:-}" ] || PDENSE=$bpb
		# shellcheck disable=SC2086 # "B K NDENSE": the three words block_read takes
		f=$(case "$3" in *" "*) block_read $3 ;; *) echo "$3" ;; esac)
		prows+=("$(printf '| %-44s | %6s | %+7.4f | %5s | %5ds |' "$1" "$bpb" \
			"$(awk -v a="$bpb" -v b="$PDENSE" 'BEGIN { print a - b }')" "$f" $((SECONDS - t0)))")
		echo "${prows[-1]}" >&2
	}
	# od_rows LOGITS BYTES: "bits rows" of the rows whose next byte is known (BYTES: one
	# decimal byte a line); row i's logits score byte i+1
	od_rows() {
		od -An -v -f -w$((256 * 4)) "$1" | awk 'NR == FNR { b[NR - 1] = $1; nb = NR; next }
			FNR < nb { mx = $1; for (i = 2; i <= 256; i++) if ($i > mx) mx = $i
				s = 0; for (i = 1; i <= 256; i++) s += exp($i - mx)
				bits += (log(s) - ($(b[FNR] + 1) - mx)) / log(2); rows++ }
			END { printf "%.9f %d\n", bits, rows }' "$2" -
	}
	# block_read B K NDENSE: the share of keys block_topk reads over the scored rows,
	# all layers: rows of query block qb >= 2 read the first block, K others and the
	# diagonal up to themselves, unless K covers every block; NDENSE layers read all
	block_read() {
		awk -v B="$1" -v K="$2" -v D="$3" -v L="$LAYERS" -v N="$NBYTES" -v C="$CTX" 'BEGIN {
			for (s = 0; s < N; s += C) {
				len = N - s < C ? N - s : C
				for (t = 0; t + 1 < len; t++) {
					qb = int(t / B); a += t + 1
					r += qb < 2 || K >= qb - 1 ? t + 1 : (1 + K) * B + t - qb * B + 1
				}
			}
			printf "%.3f\n", (D + (L - D) * r / a) / L }'
	}
	prow "dense (interpreter)" "" 1.000
	for k in 1 2 4; do prow "block_topk(block 64, topk $k)" "attend prefill block_topk(block 64, topk $k);" "64 $k 0"; done
	prow "block_topk(block 64, topk 2) dense_layers 0" "attend prefill block_topk(block 64, topk 2) dense_layers 0;" "64 2 1"
	for g in 0.9 0.95; do prow "coverage gamma $g block 64" "attend prefill coverage gamma $g block 64;" "n/a"; done
fi

{
	echo "$BEGIN"
	echo "Load when measured (/proc/loadavg): $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo
	echo "Decode: compiled, $THREADS thread(s); held-out $(basename "$HELD") ($NBYTES bytes) in chunks of $CTX"
	echo "bytes from an empty context, every byte fed through the step entry (positions 0..$((CTX - 2)))."
	echo "KV read: the share of the KV positions a dense step reads, over the scored positions"
	echo "(sparse layers; all $LAYERS layers; one sparse layer at position $((CTX - 1))).  Speed: $RUNS pairs"
	echo "alternating with dense on the first $TIME_BYTES bytes, the median tokens/s and ratio."
	echo
	echo "| decode policy | bits/byte | vs dense | KV read, sparse layers | KV read, all layers | KV read at 1023 | tokens/s | speed-up | logits hash |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Knob row equals compiled budget 64 bit for bit (same logits hash): $KNOB_OK."
	echo "Budget 1024 (the context) equals dense bit for bit (same logits hash): $BUDGET_OK."
	if [ ${#prows[@]} -gt 0 ]; then
		echo
		echo "Prefill: interpreter (elide run --interp, passes=sparse-attention), one prefill per $CTX-byte chunk,"
		echo "bits per byte from the logits of every row.  KV read: keys read over the scored rows (block_topk,"
		echo "with its dense layers; n/a: not computed, coverage's choice depends on the data).  Time: the whole row."
		echo
		echo "| prefill policy | bits/byte | vs dense | KV read | time |"
		echo "|---|---|---|---|---|"
		printf '%s\n' "${prows[@]}"
	elif [ -n "$OUTMD" ] && [ -f "$OUTMD" ] && grep -q '^Prefill: interpreter' "$OUTMD"; then
		# PREFILL=0 into a file that has prefill rows: those stay, marked as kept
		echo
		awk -v e="$END" '/^Prefill: interpreter/ { on = 1 } $0 == e { on = 0 } on' "$OUTMD" |
			sed '/^(Prefill rows kept from an earlier run/d' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
		echo
		echo "(Prefill rows kept from an earlier run of this script: \`PREFILL=0\` left them out this time.)"
	fi
	echo "$END"
} >"$TMP/table.md"
cat "$TMP/table.md"
# OUT.md: the tables replace the lines between the markers (the prose around them
# stays), or make the whole file when it has no markers
if [ -n "$OUTMD" ]; then
	if [ -f "$OUTMD" ] && grep -qxF "$BEGIN" "$OUTMD" && grep -qxF "$END" "$OUTMD"; then
		awk -v b="$BEGIN" -v e="$END" -v t="$TMP/table.md" '
			$0 == b { while ((getline l < t) > 0) print l; skip = 1; next }
			$0 == e { skip = 0; next }
			!skip' "$OUTMD" >"$TMP/new.md"
		cat "$TMP/new.md" >"$OUTMD"
	else
		{ echo "# charlm8: sparse attention"; echo; cat "$TMP/table.md"; } >"$OUTMD"
	fi
fi
