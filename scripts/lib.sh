# lib.sh - what the table scripts (exit_table, skip_table, prune_table, quant_table)
# share, sourced by each, never run: the setup (paths, tools, a temporary directory),
# compiling an example model under one policy statement and linking it with the
# example driver (examples/charlm/main.c), scoring it with the driver's --eval, and
# the paired speed-up of one variant over another.  The caller sets TOOL (its name,
# for messages) and THREADS; HELD (the held-out text), CTX (chunk size, the model's
# context when empty) and RUNS (pairs per speed-up) after table_setup.
#   TOOL=x_table; THREADS=1; . "$(dirname "$0")/lib.sh"; table_setup BUILD MODEL

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# table_setup BUILD_DIR MODEL: BUILD (absolute), MODEL, UP (its name in upper case),
# SRC (examples/MODEL), ELIDE, CC and TMP (removed at exit)
table_setup() {
	BUILD=$1 MODEL=$2
	case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
	SRC="$ROOT/examples/$MODEL"
	ELIDE="$BUILD/tools/elide"
	CC=${CC:-cc}
	UP=$(echo "$MODEL" | tr a-z A-Z)
	HELD=${HELD:-"$SRC/heldout_4k.txt"}
	CTX=${CTX:-}
	RUNS=${RUNS:-3}
	TMP=$(mktemp -d)
	trap 'rm -rf "$TMP"' EXIT
}

# table_require [FILE...]: the tools, the model, HELD and each FILE exist
table_require() {
	local f
	for f in "$ELIDE" "$SRC/$MODEL.elide" "$SRC/$MODEL.safetensors" "$ROOT/examples/charlm/main.c" \
		"$HELD" "$BUILD/runtime/libelide_rt.a" "$@"; do
		[ -e "$f" ] || { echo "$TOOL: missing $f (build first: make build)" >&2; exit 1; }
	done
}

# table_build NAME "STATEMENTS" [COMPILE_FLAG...]: the model with the statements as
# policy t (none when empty), compiled into $TMP/NAME/out and linked with the driver
# as $TMP/NAME/run; run from SRC, so a calibration file may be named relative to it
table_build() {
	local name=$1 stmt=$2 d="$TMP/$1" pol=()
	shift 2
	mkdir -p "$d/out"
	{ cat "$SRC/$MODEL.elide"; printf '\npolicy t for %s {\n  %s\n}\n' "$MODEL" "$stmt"; } >"$d/m.elide"
	[ -z "$stmt" ] || pol=(--policy t)
	(cd "$SRC" && "$ELIDE" compile "$d/m.elide" -w "$SRC/$MODEL.safetensors" "${pol[@]}" -o "$d/out" "$@" \
		>"$d/log" 2>&1) || { cat "$d/log" >&2; echo "$TOOL: compiling '$name' failed" >&2; exit 1; }
	$CC -O2 -I"$d/out" -I"$ROOT" -DMODEL="$MODEL" -DMODEL_UPPER="$UP" -DMODEL_HEADER="\"$MODEL.h\"" \
		-DCHARLM_DEFAULT_WEIGHTS="\"$d/out/$MODEL.weights\"" "$ROOT/examples/charlm/main.c" "$d/out/$MODEL.o" \
		"$BUILD/runtime/libelide_rt.a" -lm -lpthread -o "$d/run"
}

# table_score NAME [KNOB=V...]: the driver's --eval output for the variant
table_score() {
	local d="$TMP/$1" a k=()
	shift
	for a in "$@"; do k+=(--knob "$a"); done
	"$d/run" -w "$d/out/$MODEL.weights" --eval "$HELD" ${CTX:+--ctx "$CTX"} --threads "$THREADS" "${k[@]}"
}

# fields of an --eval output on stdin
tps_of() { sed -n 's/.*, \([0-9.]*\) tokens\/s).*/\1/p'; }
bpb_of() { sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p'; }
layers_of() { sed -n 's/^layers-per-token \([0-9.]*\).*/\1/p'; }
tokens_of() { sed -n 's/^bits-per-byte [0-9.]* (\([0-9]*\) bytes.*/\1/p'; }

# table_eval NAME [KNOB=V...]: scores the variant; EV (the --eval output), BPB (bits per
# byte), LPT (layers per token) and NTOK (tokens scored)
table_eval() {
	EV=$(table_score "$@")
	BPB=$(printf '%s\n' "$EV" | bpb_of)
	LPT=$(printf '%s\n' "$EV" | layers_of)
	NTOK=$(printf '%s\n' "$EV" | tokens_of)
}

# table_paired NAME [KNOB=V...]: "SPEEDUP TOKENS/S": NAME scored in alternation with
# the variant 'dense' RUNS times, the median ratio of their tokens/s and NAME's last
table_paired() {
	local name=$1 i td tv ratios=()
	shift
	for i in $(seq "$RUNS"); do
		td=$(table_score dense | tps_of)
		tv=$(table_score "$name" "$@" | tps_of)
		ratios+=("$(awk -v a="$tv" -v b="$td" 'BEGIN { print a / b }')")
	done
	echo "$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }') $tv"
}
