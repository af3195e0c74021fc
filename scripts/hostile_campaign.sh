#!/usr/bin/env bash
# hostile_campaign.sh - a re-runnable campaign of hostile inputs against elide and the
# code it generates (docs/hostile.md).  It generates seeded mutations of well-formed
# inputs (scripts/hostile/mutate.c), runs each through the driver or the generated
# code (scripts/hostile/api.c) and classifies the outcome: clean error, accepted,
# crash (a signal, a sanitizer report, an internal compiler error), hang (timeout) or
# wrong (accepted when it must not be, a source error without file:line:col, an error
# without a message, other logits than the good input's where nothing may change, a
# temporary file left behind, an output set that is neither the old nor the new one).
#   bash scripts/hostile_campaign.sh [BUILD]      (BUILD: build; needs BUILD/tools/elide)
# The sanitizer build (build-asan/tools/elide, from `make asan`) runs the inputs when it
# exists; the release build runs the compiles that are timed (kills, output sets).
# Environment: HOSTILE_SEED (1), HOSTILE_SCALE (1.0: multiplies every count),
# HOSTILE_JOBS (1; 2 runs two halves of the categories at once), HOSTILE_ONLY (a
# space-separated list of categories: elide eir safetensors gguf blob api
# cli outdir), HOSTILE_ELIDE (the elide that runs the inputs), HOSTILE_OUT (BUILD/hostile).
# Writes BUILD/hostile/summary.md (the table) and BUILD/hostile/findings.txt (each
# crash, hang and wrong with its reproduction); exit status 1 when there is one.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
REL=$BUILD/tools/elide
[ -x "$REL" ] || { echo "hostile_campaign: $REL missing (make build)" >&2; exit 2; }
ELIDE=$REL
[ -x "$ROOT/build-asan/tools/elide" ] && ELIDE=$ROOT/build-asan/tools/elide
[ -n "${HOSTILE_ELIDE:-}" ] && ELIDE=$HOSTILE_ELIDE
SEED=${HOSTILE_SEED:-1}
SCALE=${HOSTILE_SCALE:-1}
ONLY=${HOSTILE_ONLY:-}
OUT=${HOSTILE_OUT:-$BUILD/hostile}
rm -rf "$OUT"
mkdir -p "$OUT/in" "$OUT/work" "$OUT/tmp" "$OUT/fail"
export TMPDIR=$OUT/tmp
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=99:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=99
: > "$OUT/results.tsv"
: > "$OUT/findings.txt"
T_START=$(date +%s)

n_of() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); print (v < 1 ? 1 : v) }'; }
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

TINY=$ROOT/tests/passes/prune-structured/Inputs/tiny.elide
TINYW=$ROOT/tests/passes/prune-structured/Inputs/tiny.safetensors
GGUF=$ROOT/tests/fixtures/import/sharded.gguf

# ---- the table ----
summarize() {
	{
		echo "# Hostile-input campaign"
		echo
		echo "seed $SEED, scale $SCALE, $(date -u +%Y-%m-%dT%H:%MZ), $(( $(date +%s) - T_START )) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "inputs run by $( [ "$ELIDE" = "$REL" ] && echo 'the release build' || echo 'the ASan+UBSan build (build-asan)'); kills and output sets by the release build"
		echo
		echo "| category | tried | clean error | accepted | crash | hang | wrong |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		awk -F'\t' '
			{ t[$1]++; c[$1, $3]++; order[$1] = order[$1] ? order[$1] : ++n; name[n] = $1; T++; C[$3]++ }
			END {
				for (i = 1; i <= n; i++) { k = name[i]
					printf "| %s | %d | %d | %d | %d | %d | %d |\n", k, t[k], c[k, "error"], c[k, "accepted"], c[k, "crash"], c[k, "hang"], c[k, "wrong"] }
				printf "| **all** | **%d** | **%d** | **%d** | **%d** | **%d** | **%d** |\n", T, C["error"], C["accepted"], C["crash"], C["hang"], C["wrong"]
			}' "$OUT/results.tsv"
		echo
		if [ -s "$OUT/findings.txt" ]; then
			echo "Findings (crash, hang, wrong; inputs kept in hostile/fail/):"
			echo
			echo '```'
			grep -a '^== ' "$OUT/findings.txt" | head -60
			echo '```'
		else
			echo "No crash, hang or wrong result."
		fi
	} > "$OUT/summary.md"
}

# HOSTILE_JOBS=2: the categories in two halves at once (two processes of this script)
if [ "${HOSTILE_JOBS:-1}" -gt 1 ] && [ -z "$ONLY" ]; then
	HOSTILE_JOBS=1 HOSTILE_OUT=$OUT/part1 HOSTILE_ONLY="elide eir" bash "$ROOT/scripts/hostile_campaign.sh" "$BUILD" > "$OUT/part1.log" 2>&1 &
	HOSTILE_JOBS=1 HOSTILE_OUT=$OUT/part2 HOSTILE_ONLY="safetensors gguf blob api cli outdir" bash "$ROOT/scripts/hostile_campaign.sh" "$BUILD" > "$OUT/part2.log" 2>&1 &
	wait
	cat "$OUT/part1/results.tsv" "$OUT/part2/results.tsv" > "$OUT/results.tsv"
	cat "$OUT/part1/findings.txt" "$OUT/part2/findings.txt" > "$OUT/findings.txt"
	cp "$OUT"/part*/fail/* "$OUT/fail/" 2> /dev/null
	summarize
	cat "$OUT/summary.md"
	[ ! -s "$OUT/findings.txt" ]
	exit
fi

# ---- tools: the mutator and the generated-code harness (runtime from source, ASan) ----
CFLAGS_H="-std=c17 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -I$ROOT -I$ROOT/runtime"
cc $CFLAGS_H scripts/hostile/mutate.c runtime/*.c -lm -lpthread -o "$OUT/mutate" || exit 2
W=$OUT/work
cp "$TINY" "$W/tk.elide"
echo 'policy hostile for tiny { exit at 1, 3 head head measure margin threshold 0.4 patience 1 kv propagate; }' >> "$W/tk.elide"
"$REL" compile "$W/tk.elide" -w "$TINYW" --policy hostile -o "$W/tk" >/dev/null || exit 2
"$REL" compile "$TINY" -w "$TINYW" -o "$W/dense" >/dev/null || exit 2
"$REL" compile "$TINY" -w "$TINYW" --policy ffn_l1 -o "$W/pruned" >/dev/null || exit 2
cc $CFLAGS_H -fsanitize=address,undefined -I"$W/tk" scripts/hostile/api.c runtime/*.c "$W/tk/tiny.o" \
	-lm -lpthread -o "$OUT/api" || exit 2
"$OUT/api" baseline "$W/tk/tiny.weights" "$W/base.logits" || exit 2
"$REL" opt "$TINY" --passes=shape-infer -o "$W/tiny.eir" || exit 2
"$REL" opt "$W/tk.elide" --policy hostile --passes=default -o "$W/tkx.eir" || exit 2
"$REL" import "$GGUF" -o "$W/g.elide" >/dev/null || exit 2
"$ELIDE" run --interp "$TINY" -w "$TINYW" --tokens 1,2,3 --dump-logits "$W/st.logits" >/dev/null || exit 2
"$ELIDE" run --interp "$W/g.elide" -w "$GGUF" --tokens 1,2,3 --dump-logits "$W/gg.logits" >/dev/null || exit 2
mkfifo "$W/fifo"

# ---- classification ----
# record CATEGORY ID CLASS WHAT LOG: one result; crash/hang/wrong also go to findings
record() {
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/results.tsv"
	case $3 in crash|hang|wrong)
		{
			printf '== %s %s: %s\n   %s\n' "$1" "$2" "$3" "$4"
			[ -f "$5" ] && head -c 1500 "$5" | sed 's/^/   | /'
			echo
		} >> "$OUT/findings.txt" ;;
	esac
}

# crashed RC LOG: the run crashed (signal, sanitizer, internal error)
crashed() {
	[ "$1" -ge 128 ] && [ "$1" != 124 ] && return 0
	[ "$1" = 99 ] && return 0
	grep -qa -e 'ERROR: AddressSanitizer' -e 'ERROR: LeakSanitizer' -e 'runtime error:' \
		-e 'internal compiler error' -e 'Segmentation fault' "$2"
}

# leftovers: temporary files left in TMPDIR (removed after being reported)
leftovers() {
	if [ -n "$(ls -A "$TMPDIR")" ]; then
		ls -A "$TMPDIR" | head -3 | tr '\n' ' '
		rm -rf "${TMPDIR:?}"/* "${TMPDIR:?}"/.[!.]* 2>/dev/null
		return 0
	fi
	return 1
}

# run_to SECONDS LOG CMD...: runs a command with a timeout, output in LOG; sets RC
run_to() {
	local t=$1 log=$2
	shift 2
	timeout -k 2 "$t" "$@" > "$log" 2>&1 < /dev/null
	RC=$?
}

# judge_source CATEGORY ID WHAT LOG: a source input (.elide, .eir): an error must be
# located (file:line:col: error:), an accepted input is fine
judge_source() {
	local cat=$1 id=$2 what=$3 log=$4 extra=${5:-}
	if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then record "$cat" "$id" hang "$what" "$log"
	elif crashed "$RC" "$log"; then record "$cat" "$id" crash "$what" "$log"
	elif lo=$(leftovers); then record "$cat" "$id" wrong "$what; left $lo" "$log"
	elif [ "$RC" = 0 ]; then
		if [ -n "$extra" ]; then record "$cat" "$id" wrong "$what; $extra" "$log"
		else record "$cat" "$id" accepted "$what" "$log"; fi
	elif grep -qaE '^[^ :]+:[0-9]+:[0-9]+: error: ' "$log"; then record "$cat" "$id" error "$what" "$log"
	else record "$cat" "$id" wrong "$what; error without file:line:col" "$log"
	fi
}

# judge_file CATEGORY ID WHAT LOG WANT_LOGITS GOT_LOGITS: a weights file: an error
# needs 'error:'; accepted weights whose header was changed must give the same logits
judge_file() {
	local cat=$1 id=$2 what=$3 log=$4 want=$5 got=$6
	if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then record "$cat" "$id" hang "$what" "$log"
	elif crashed "$RC" "$log"; then record "$cat" "$id" crash "$what" "$log"
	elif lo=$(leftovers); then record "$cat" "$id" wrong "$what; left $lo" "$log"
	elif [ "$RC" = 0 ]; then
		if [ -n "$want" ] && ! cmp -s "$want" "$got"; then
			case $what in
			# a changed data byte, or a GGUF tensor type (GGUF has no checksum: F32
			# bytes read as F16 are a valid file of other weights)
			*data*|*flip*|*random*|*"tensor type"*) record "$cat" "$id" accepted "$what (other weights, other logits)" "$log" ;;
			*) record "$cat" "$id" wrong "$what; accepted with other logits" "$log" ;;
			esac
		else record "$cat" "$id" accepted "$what" "$log"; fi
	elif grep -qa 'error: ' "$log"; then record "$cat" "$id" error "$what" "$log"
	else record "$cat" "$id" wrong "$what; failed without an error message" "$log"
	fi
}

# keep a failing input for reproduction
keep() { cp "$1" "$OUT/fail/$2" 2>/dev/null; }

progress() { echo "hostile: $1 done ($(( $(date +%s) - T_START )) s)"; }

# a set is the hashes of NAME.{o,h,weights,json}; A (dense) and B (pruned) differ
set_of() { (cd "$1" && for e in o h weights json; do [ -f "tiny.$e" ] && [ ! -L "tiny.$e" ] && sha1sum < "tiny.$e" | cut -c1-40 || echo none; done | tr '\n' ' '); }
# stray names in DIR besides a complete set (temporaries, journals, staging)
strays() { (cd "$1" && ls -A | grep -vxE 'tiny\.(o|h|weights|json)' | tr '\n' ' '); }

# ---- 1. .elide source mutations through check (and the default pipeline) ----
if want elide; then
	N=$(n_of 700)
	"$OUT/mutate" text "$TINY" "$OUT/in/e" "$N" "$SEED" > "$OUT/in/e.txt"
	while IFS=$'\t' read -r i what; do
		f=$OUT/in/e.$i
		cp "$f" "$W/m.elide"
		if [ $((i % 4)) = 3 ]; then
			run_to 20 "$W/log" "$ELIDE" opt "$W/m.elide" --policy ffn_l1 --passes=default -o "$W/m.out"
		else
			run_to 20 "$W/log" "$ELIDE" check "$W/m.elide"
		fi
		judge_source elide "$i" "$what" "$W/log"
		case $(tail -1 "$OUT/results.tsv" | cut -f3) in crash|hang|wrong) keep "$f" "e.$i.elide" ;; esac
		rm -f "$f"
	done < "$OUT/in/e.txt"
	# limits: deep nesting and long chains built directly
	for depth in 100 1000 10000 100000 1000000; do
		{ printf 'model m { const a = '; printf '%*s' "$depth" '' | tr ' ' '('; printf '1'; printf '%*s' "$depth" '' | tr ' ' ')'; printf '; }\n'; } > "$W/m.elide"
		run_to 20 "$W/log" "$ELIDE" check "$W/m.elide"
		judge_source elide "nest$depth" "const nested $depth deep" "$W/log"
	done
	progress elide
fi

# ---- 2. .eir mutations through opt with pass lists ----
if want eir; then
	N=$(n_of 350)
	PASSES=("shape-infer" "shape-infer,dce" "const-fold,cse,dce" "dce,cse" "early-exit,dce"
	        "shape-infer,const-fold,dce,cse" "quantize,dce" "sparse-attention,dce")
	for base in tiny tkx; do
		"$OUT/mutate" text "$W/$base.eir" "$OUT/in/$base" "$N" "$SEED" > "$OUT/in/$base.txt"
		k=0
		while IFS=$'\t' read -r i what; do
			f=$OUT/in/$base.$i
			cp "$f" "$W/m.eir"
			p=${PASSES[$((k % ${#PASSES[@]}))]}
			k=$((k + 1))
			extra=()
			[ $((k % 3)) = 0 ] && extra=(--no-verify-each)
			rm -f "$W/m.out"
			run_to 20 "$W/log" "$ELIDE" opt "$W/m.eir" "--passes=$p" "${extra[@]}" -o "$W/m.out"
			bad=
			if [ "$RC" = 0 ]; then
				# what opt accepted and wrote must read back and verify
				timeout 20 "$ELIDE" opt "$W/m.out" > /dev/null 2> "$W/log2" || bad="the output of opt does not verify: $(head -c 200 "$W/log2")"
			fi
			judge_source eir "$base.$i" "$what; --passes=$p ${extra[*]}" "$W/log" "$bad"
			case $(tail -1 "$OUT/results.tsv" | cut -f3) in crash|hang|wrong) keep "$f" "$base.$i.eir" ;; esac
			rm -f "$f"
		done < "$OUT/in/$base.txt"
	done
	progress eir
fi

# ---- 3. safetensors mutations through run --interp and compile ----
if want safetensors; then
	N=$(n_of 300)
	"$OUT/mutate" safetensors "$TINYW" "$OUT/in/s" "$N" "$SEED" > "$OUT/in/s.txt"
	while IFS=$'\t' read -r i what; do
		f=$OUT/in/s.$i
		cp "$f" "$W/m.safetensors"
		rm -f "$W/m.logits"
		if [ $((i % 8)) = 7 ]; then
			rm -rf "$W/c"
			run_to 60 "$W/log" "$ELIDE" compile "$TINY" -w "$W/m.safetensors" -o "$W/c"
			if [ "$RC" != 0 ] && [ "$RC" != 124 ] && [ -d "$W/c" ] && [ -n "$(ls -A "$W/c")" ]; then
				record safetensors "$i" wrong "$what (compile): a failed compile left $(ls -A "$W/c" | head -3 | tr '\n' ' ')" "$W/log"
			elif [ "$RC" = 0 ] && [ -n "$(strays "$W/c")" ]; then
				record safetensors "$i" wrong "$what (compile): strays $(strays "$W/c")" "$W/log"
			else
				judge_file safetensors "$i" "$what (compile)" "$W/log" "" ""
			fi
		else
			run_to 20 "$W/log" "$ELIDE" run --interp "$TINY" -w "$W/m.safetensors" --tokens 1,2,3 --dump-logits "$W/m.logits"
			judge_file safetensors "$i" "$what" "$W/log" "$W/st.logits" "$W/m.logits"
		fi
		case $(tail -1 "$OUT/results.tsv" | cut -f3) in crash|hang|wrong) keep "$f" "s.$i.safetensors" ;; esac
		rm -f "$f"
	done < "$OUT/in/s.txt"
	progress safetensors
fi

# ---- 4. GGUF mutations through run --interp and compile ----
if want gguf; then
	N=$(n_of 250)
	"$OUT/mutate" gguf "$GGUF" "$OUT/in/g" "$N" "$SEED" > "$OUT/in/g.txt"
	while IFS=$'\t' read -r i what; do
		f=$OUT/in/g.$i
		cp "$f" "$W/m.gguf"
		rm -f "$W/m.logits"
		if [ $((i % 10)) = 9 ]; then
			rm -rf "$W/c"
			run_to 60 "$W/log" "$ELIDE" compile "$W/g.elide" -w "$W/m.gguf" -o "$W/c"
			judge_file gguf "$i" "$what (compile)" "$W/log" "" ""
		else
			run_to 20 "$W/log" "$ELIDE" run --interp "$W/g.elide" -w "$W/m.gguf" --tokens 1,2,3 --dump-logits "$W/m.logits"
			judge_file gguf "$i" "$what" "$W/log" "$W/gg.logits" "$W/m.logits"
		fi
		case $(tail -1 "$OUT/results.tsv" | cut -f3) in crash|hang|wrong) keep "$f" "g.$i.gguf" ;; esac
		rm -f "$f"
	done < "$OUT/in/g.txt"
	# the importer reads the same files
	N=$(n_of 60)
	"$OUT/mutate" gguf "$GGUF" "$OUT/in/gi" "$N" "$((SEED + 7))" > "$OUT/in/gi.txt"
	while IFS=$'\t' read -r i what; do
		f=$OUT/in/gi.$i
		run_to 20 "$W/log" "$ELIDE" import "$f" -o "$W/imp.elide"
		judge_file gguf "import.$i" "$what (import)" "$W/log" "" ""
		case $(tail -1 "$OUT/results.tsv" | cut -f3) in crash|hang|wrong) keep "$f" "gi.$i.gguf" ;; esac
		rm -f "$f"
	done < "$OUT/in/gi.txt"
	progress gguf
fi

# ---- 5. weight blobs through the generated code ----
if want blob; then
	N=$(n_of 200)
	: > "$OUT/in/b.txt"
	for other in dense pruned; do
		"$OUT/mutate" blob "$W/tk/tiny.weights" "$OUT/in/b$other" "$N" "$SEED" "$W/$other/tiny.weights" |
			sed "s/^/$other./" >> "$OUT/in/b.txt"
	done
	while IFS=$'\t' read -r id what; do
		other=${id%%.*}
		i=${id#*.}
		f=$OUT/in/b$other.$i
		run_to 20 "$W/log" "$OUT/api" blob "$f" "$W/base.logits"
		if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then record blob "$id" hang "$what" "$W/log"
		elif crashed "$RC" "$W/log"; then record blob "$id" crash "$what" "$W/log"
		elif [ "$RC" = 0 ]; then record blob "$id" error "$what" "$W/log"
		elif [ "$RC" = 10 ]; then record blob "$id" accepted "$what" "$W/log"
		elif [[ $what == *"checksum rewritten"* ]] && grep -q 'logits differ' "$W/log"; then
			# a payload changed and its checksum rewritten is a valid blob of other
			# weights: the checksum detects corruption, not tampering (docs/blob.md)
			record blob "$id" accepted "$what (other weights, other logits)" "$W/log"
		else record blob "$id" wrong "$what" "$W/log"; fi
		case $(tail -1 "$OUT/results.tsv" | cut -f3) in crash|hang|wrong) keep "$f" "b.$id.weights" ;; esac
		rm -f "$f"
	done < "$OUT/in/b.txt"
	progress blob
fi

# ---- 6. generated-code API misuse ----
if want api; then
	NC=$("$OUT/api" count)
	for i in $(seq 0 $((NC - 1))); do
		run_to 20 "$W/log" "$OUT/api" case "$i" "$W/tk/tiny.weights"
		what="case $i: $(grep -am1 -e '->' -e ':' "$W/log" | head -c 120)"
		if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then record api "$i" hang "$what" "$W/log"
		elif crashed "$RC" "$W/log"; then record api "$i" crash "$what" "$W/log"
		elif [ "$RC" = 0 ]; then record api "$i" error "$what" "$W/log"
		else record api "$i" wrong "$what" "$W/log"; fi
	done
	progress api
fi

# ---- 7. CLI argument abuse ----
if want cli; then
	M=$TINY
	WS=$TINYW
	LONG=$(head -c 100000 /dev/zero | tr '\0' a)
	mkdir -p "$W/adir"
	# a private null device for the outputs written to a device (a FIFO when mknod is
	# not allowed): an elide that renames over it would replace /dev/null itself
	mknod -m 666 "$W/null" c 1 3 2> /dev/null || mkfifo "$W/null"
	NULLKIND=$( [ -c "$W/null" ] && echo c || echo p )
	OKN=$( [ "$NULLKIND" = c ] && echo ok || echo any ) # a FIFO without a reader fails
	cp "$TINY" "$W/calz.elide"
	for p in "calz /dev/zero" "calf $W/fifo" "cald $W/adir"; do
		set -- $p
		echo "policy $1 for tiny { prune ffn_neuron keep 12 score act multiple 1 calibrate \"$2\" tokens 40; }" >> "$W/calz.elide"
	done
	: > "$W/empty"
	# EXPECT|ARGS (words split on spaces; @LONG, @NL replaced); err: a clean error,
	# ok: success, any: either, but never a crash, a hang or a silent failure
	cat > "$W/cli.txt" <<-EOF
	usage|
	err|bogus
	err|--bogus
	err|check
	err|check $M --bogus
	err|check $M --policy
	err|check $M --policy nope
	err|check $W/adir
	err|check /dev/null
	err|check /dev/zero
	err|check $W/fifo
	err|check $W/missing.elide
	err|check $W/empty
	err|check @LONG
	err|check $M $M
	ok|check $M --dump-ast
	err|opt $M --passes=nope
	err|opt $M --passes=,
	err|opt $M --passes=dce,,dce
	ok|opt $M --passes=
	any|opt $M --passes=dce --print-after=nope
	err|opt $M -o
	err|opt $M -o $W/adir
	err|opt $M -o /proc/self/nope
	err|opt $M -o $W/missing/dir/out.eir
	err|opt $W/fifo
	err|opt /dev/zero
	err|opt $M --passes=@LONG
	$OKN|opt $M --passes=shape-infer -o $W/null
	err|run $M
	err|run $M -w
	err|run $M -w $WS
	err|run $M -w $WS --tokens
	err|run $M -w $WS --tokens ''
	err|run $M -w $WS --tokens 1,,2
	err|run $M -w $WS --tokens 1,2,
	err|run $M -w $WS --tokens ,1
	err|run $M -w $WS --tokens -1
	err|run $M -w $WS --tokens 16
	err|run $M -w $WS --tokens 99999999999999999999
	err|run $M -w $WS --tokens 1x
	err|run $M -w $WS --tokens 0x1
	err|run $M -w $WS --tokens 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1,2
	err|run $M -w $WS --tokens @LONG
	err|run $M -w $WS --tokens 1 -n -1
	err|run $M -w $WS --tokens 1 -n abc
	err|run $M -w $WS --tokens 1 -n 99999999999999999999
	err|run $M -w $WS --tokens 1 -n 100
	err|run $M -w $WS --tokens 1 -n 2147483647
	ok|run $M -w $WS --tokens 1 -n 0
	ok|run $M -w $WS --tokens 1 -n 15
	err|run $M -w $WS --tokens 1 -n 16
	err|run $M -w $WS --tokens 1 -n 3 --temperature -1
	err|run $M -w $WS --tokens 1 -n 3 --temperature nan
	err|run $M -w $WS --tokens 1 -n 3 --temperature inf
	err|run $M -w $WS --tokens 1 -n 3 --temperature 1e999
	err|run $M -w $WS --tokens 1 -n 3 --temperature 1 --top-p 2
	err|run $M -w $WS --tokens 1 -n 3 --temperature 1 --top-p 0
	err|run $M -w $WS --tokens 1 -n 3 --temperature 1 --top-p nan
	err|run $M -w $WS --tokens 1 -n 3 --top-p 0.5
	err|run $M -w $WS --tokens 1 -n 3 --temperature 1 --seed -1
	err|run $M -w $WS --tokens 1 -n 3 --temperature 1 --seed x
	ok|run $M -w $WS --tokens 1 -n 3 --temperature 1 --seed 18446744073709551615
	err|run $M -w $WS --tokens 1 --knob x=1
	err|run $M -w $WS --tokens 1 --knob =
	err|run $M -w $WS --tokens 1 --knob exit.threshold
	err|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=nan
	err|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=2
	err|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=-0.5
	err|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=
	err|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=0.5x
	any|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.patience=1.5
	err|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.patience=1e99
	ok|run $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=1 --knob exit.threshold=0
	err|run --interp $W/tk.elide -w $WS --policy hostile --tokens 1 --knob exit.threshold=inf
	err|run $M -w $WS --tokens 1 --entry nope
	err|run $M -w $WS --tokens 1 --policy nope
	err|run $M -w $WS --tokens 1 --policy err_wide
	err|run $M -w $WS --tokens 1 --dump-logits $W/adir
	err|run $M -w $WS --tokens 1 --dump-logits $W/missing/x
	$OKN|run $M -w $WS --tokens 1 --dump-logits $W/null
	err|run $M -w $W/adir --tokens 1
	err|run $M -w /dev/null --tokens 1
	err|run $M -w /dev/zero --tokens 1
	err|run $M -w $W/fifo --tokens 1
	err|run $M -w $W/missing --tokens 1
	err|run $M -w $W/empty --tokens 1
	err|run $M -w $WS -w $WS --tokens 1
	err|run --interp $M -w $W/fifo --tokens 1
	err|run $W/fifo -w $WS --tokens 1
	any|run $M -w $WS --tokens 1 --prefill --entry step
	ok|run $M -w $WS --tokens 1,2,3 --prefill
	err|run $M -w $WS --tokens 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,1,2 --prefill
	err|run $M -w $WS --tokens 1 --knob
	ok|check $W/calz.elide --policy calz
	err|compile $W/calz.elide -w $WS --policy calz -o $W/cx
	err|compile $W/calz.elide -w $WS --policy calf -o $W/cx
	err|compile $W/calz.elide -w $WS --policy cald -o $W/cx
	err|compile $M -w $WS
	err|compile $M -o $W/cx
	err|compile $M -w $WS -o
	err|compile $M -w $WS -o $W/empty
	err|compile $M -w $WS -o /proc
	err|compile $M -w $WS -o $W/null
	err|compile $M -w $WS -o $W/null/x
	err|compile $M -w $WS -o ''
	err|compile $M -w $WS -o $W/cx --emit=bogus
	err|compile $M -w $WS -o $W/cx --emit=
	err|compile $M -w $WS -o $W/cx --emit=obj,,header
	err|compile $M -w $WS -o $W/cx --target=nonsense
	err|compile $M -w $WS -o $W/cx --target=@LONG
	err|compile $M -w $WS -o $W/cx --cpu=bogus
	err|compile $M -w $WS -o $W/cx --features=+nope
	err|compile $M -w $WS -o $W/cx --features=avx2
	err|compile $M -w $WS -o $W/cx --quantize=q3
	err|compile $M -w $WS -o $W/cx --quantize=q8 --quantize-group=0
	err|compile $M -w $WS -o $W/cx --quantize=q8 --quantize-group=7
	err|compile $M -w $WS -o $W/cx --quantize=q8 --quantize-group=-1
	err|compile $M -w $WS -o $W/cx --quantize=q8 --quantize-group=99999999999
	err|compile $M -w $WS -o $W/cx --quantize-group=32
	err|compile $M -w $WS -o $W/cx --quantize=q8 --activations=int4
	err|compile $M -w $WS -o $W/cx --quantize=q8 --activations=
	err|compile $M -w $WS -o $W/cx --quantize=bf16 --activations=int8
	err|compile $M -w $WS -o $W/cx --activations=f32
	err|compile $M -w $WS -o $W/cx -O9
	err|compile $M -w $WS -o $W/cx -O-1
	err|compile $M -w $WS -o $W/cx -MF
	err|compile $M -w $WS -o $W/cx -MD -MF $W/adir
	err|compile $M -w $WS -o $W/cx --policy nope
	err|compile $M -w $WS -o $W/cx --policy err_all
	err|compile $M -w $W/fifo -o $W/cx
	err|compile $W/fifo -w $WS -o $W/cx
	ok|compile $M -w $WS -o $W/cx --emit=header
	err|import
	err|import $W/adir
	err|import $W/fifo
	err|import /dev/zero
	err|import $W/empty
	err|import $GGUF --ctx 0
	err|import $GGUF --ctx -1
	err|import $GGUF --ctx 99999999999999999999
	err|import $GGUF --ctx abc
	err|import $GGUF --name ''
	err|import $GGUF --name 1abc
	err|import $GGUF --name a-b
	any|import $GGUF --name @LONG
	err|import $GGUF -o $W/adir
	$OKN|import $GGUF --name ok_name -o $W/null
	err|help bogus
	ok|help run
	ok|--version
	err|run $M -w $WS --tokens 1 @NL
	err|check $M@NL
	EOF
	k=0
	while IFS='|' read -r expect args; do
		k=$((k + 1))
		args=${args//@LONG/$LONG}
		read -r -a argv <<< "$args"
		for j in "${!argv[@]}"; do
			[ "${argv[$j]}" = "''" ] && argv[$j]=
			argv[$j]=${argv[$j]//@NL/$'\n'}
		done
		rm -rf "$W/cx"
		run_to 60 "$W/log" "$ELIDE" "${argv[@]}"
		what="elide ${args:0:160}"
		if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then record cli "$k" hang "$what" "$W/log"
		elif crashed "$RC" "$W/log"; then record cli "$k" crash "$what" "$W/log"
		elif lo=$(leftovers); then record cli "$k" wrong "$what; left $lo" "$W/log"
		elif ! [ -$NULLKIND "$W/null" ]; then
			record cli "$k" wrong "$what; the device node was replaced by a regular file" "$W/log"
			rm -f "$W/null"
			mknod -m 666 "$W/null" c 1 3 2> /dev/null || mkfifo "$W/null"
		elif [ "$expect" = usage ]; then
			if [ "$RC" != 0 ] && grep -qa USAGE "$W/log"; then record cli "$k" error "$what" "$W/log"
			else record cli "$k" wrong "$what; exit $RC without a usage" "$W/log"; fi
		elif [ "$RC" = 0 ]; then
			if [ "$expect" = err ]; then record cli "$k" wrong "$what; exit 0 on an invalid command" "$W/log"
			else record cli "$k" accepted "$what" "$W/log"; fi
		elif ! grep -qa 'error' "$W/log"; then record cli "$k" wrong "$what; exit $RC without an error message" "$W/log"
		elif [ "$expect" = ok ]; then record cli "$k" wrong "$what; a valid command failed" "$W/log"
		else record cli "$k" error "$what" "$W/log"; fi
	done < "$W/cli.txt"
	progress cli
fi

# ---- 8. output directory attacks ----
if want outdir; then
	A=$(set_of "$W/dense")
	B=$(set_of "$W/pruned")
	CA=("$REL" compile "$TINY" -w "$TINYW" -o)
	CB=("$REL" compile "$TINY" -w "$TINYW" --policy ffn_l1 -o)
	D=$W/od
	# 8a. links planted at every name a compile might write (the next PIDs' names too)
	NL=$(n_of 20)
	for i in $(seq 1 "$NL"); do
		rm -rf "$D" "$W/victim"; mkdir -p "$D" "$W/victim"
		"${CA[@]}" "$D" > /dev/null 2>&1
		echo victim > "$W/victim/file"
		next=$(( $(sh -c 'echo $$') + 1 ))
		case $((i % 5)) in
		0) for p in $(seq "$next" $((next + 40))); do for e in o h weights json; do ln -sf "$W/victim/file" "$D/tiny.$e.tmp.$p"; done; done; what="links at tiny.*.tmp.PID" ;;
		1) for e in o h weights json; do ln -sf "$W/victim/file" "$D/tiny.$e"; done; what="links at the output names" ;;
		2) ln -sfn "$W/victim" "$D/.tiny.commit"; what="link to a directory at the journal" ;;
		3) for p in $(seq "$next" $((next + 40))); do ln -sfn "$W/victim" "$D/.tiny.new.$p.XXXXXX"; done; what="links at staging names" ;;
		4) for e in o h weights json; do ln -sfn "$W/victim" "$D/tiny.$e"; done; what="links to a directory at the output names" ;;
		esac
		run_to 60 "$W/log" "${CB[@]}" "$D"
		if [ "$RC" = 124 ]; then record outdir "link.$i" hang "$what" "$W/log"
		elif crashed "$RC" "$W/log"; then record outdir "link.$i" crash "$what" "$W/log"
		elif [ "$(cat "$W/victim/file")" != victim ] || [ "$(ls -A "$W/victim")" != file ]; then
			record outdir "link.$i" wrong "$what; the link's target was written" "$W/log"
		elif [ "$RC" = 0 ] && [ "$(set_of "$D")" = "$B" ]; then record outdir "link.$i" accepted "$what" "$W/log"
		elif [ "$RC" != 0 ] && grep -qa 'error: ' "$W/log" && { [ "$(set_of "$D")" = "$A" ] || [ "$(set_of "$D")" = "$B" ]; }; then
			record outdir "link.$i" error "$what" "$W/log"
		else record outdir "link.$i" wrong "$what; set '$(set_of "$D")' rc $RC" "$W/log"; fi
	done
	# 8b. a read-only directory (as an unprivileged user), a full disk
	rm -rf "$D"; mkdir -p "$D"; "${CA[@]}" "$D" > /dev/null 2>&1
	for kind in ro full; do
		if [ "$kind" = ro ]; then
			chmod 755 "$W" "$OUT" "$BUILD" 2>/dev/null
			chmod 555 "$D"
			if [ "$(id -u)" = 0 ] && command -v runuser > /dev/null; then
				run_to 60 "$W/log" runuser -u nobody -- "$REL" compile "$TINY" -w "$TINYW" --policy ffn_l1 -o "$D"
			else
				run_to 60 "$W/log" "${CB[@]}" "$D"
			fi
			chmod 755 "$D"
		else
			run_to 60 "$W/log" bash -c "trap '' XFSZ; ulimit -f 8; exec '$REL' compile '$TINY' -w '$TINYW' --policy ffn_l1 -o '$D'"
		fi
		s=$(set_of "$D")
		if [ "$RC" = 124 ]; then record outdir "$kind" hang "$kind directory" "$W/log"
		elif crashed "$RC" "$W/log"; then record outdir "$kind" crash "$kind directory" "$W/log"
		elif [ "$RC" != 0 ] && [ "$s" = "$A" ] && [ -z "$(strays "$D")" ] && grep -qa 'error: ' "$W/log"; then record outdir "$kind" error "$kind directory" "$W/log"
		elif [ "$RC" = 0 ] && [ "$kind" = ro ] && [ "$(id -u)" = 0 ] && ! command -v runuser > /dev/null; then record outdir "$kind" accepted "$kind directory (root writes anyway)" "$W/log"
		else record outdir "$kind" wrong "$kind directory; rc $RC set '$s' strays '$(strays "$D")'" "$W/log"; fi
	done
	# 8c. compiles killed at random moments (SIGKILL, SIGTERM, SIGINT): the complete old
	# set or the complete new one; after SIGKILL a journal may stand, whose files with
	# the directory's others must make the new set (the next compile finishes it)
	NK=$(n_of 60)
	rm -rf "$D"; mkdir -p "$D"; "${CA[@]}" "$D" > /dev/null 2>&1
	for i in $(seq 1 "$NK"); do
		s=$(set_of "$D")
		if [ "$s" = "$A" ]; then cmd=("${CB[@]}"); new=$B; old=$A; else cmd=("${CA[@]}"); new=$A; old=$B; fi
		sig=KILL
		[ $((i % 4)) = 1 ] && sig=TERM
		[ $((i % 4)) = 3 ] && sig=INT
		"${cmd[@]}" "$D" > "$W/log" 2>&1 &
		pid=$!
		sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
		kill -"$sig" "$pid" 2> /dev/null
		wait "$pid" 2> /dev/null
		RC=$?
		s=$(set_of "$D")
		view=$s
		if [ -d "$D/.tiny.commit" ]; then
			view=$( (cd "$D" && for e in o h weights json; do if [ -f ".tiny.commit/tiny.$e" ]; then sha1sum < ".tiny.commit/tiny.$e"; elif [ -f "tiny.$e" ]; then sha1sum < "tiny.$e"; else echo none; fi | cut -c1-40; done | tr '\n' ' ') )
		fi
		what="$sig at a random moment"
		if grep -qa -e 'internal compiler error' -e 'Segmentation' "$W/log"; then record outdir "kill.$i" crash "$what" "$W/log"
		elif [ "$view" = "$new" ]; then record outdir "kill.$i" accepted "$what: the new set$([ -d "$D/.tiny.commit" ] && echo ' (through the journal)')" "$W/log"
		elif [ "$s" = "$old" ] && [ ! -d "$D/.tiny.commit" ]; then record outdir "kill.$i" error "$what: the old set" "$W/log"
		else record outdir "kill.$i" wrong "$what: set '$s', view '$view' (old '$old', new '$new')" "$W/log"; fi
		# only this compile's own staging counts: one left by an earlier SIGKILL stays
		# until a compile reaches its recovery step, which a SIGTERM in the first
		# milliseconds forestalls (the next compile removes it)
		mine=$(strays "$D" | tr ' ' '\n' | grep -E "^\.tiny\.new\.$pid\." | tr '\n' ' ')
		if [ "$sig" != KILL ] && [ -n "$mine" ]; then
			record outdir "kill.$i" wrong "$sig left '$mine'" "$W/log"
		fi
		# a journal left by SIGKILL: the next compile finishes it first
		if [ -d "$D/.tiny.commit" ]; then
			"${CA[@]}" "$D" > /dev/null 2>&1
			"${CB[@]}" "$D" > /dev/null 2>&1
			[ "$(set_of "$D")" = "$B" ] || record outdir "kill.$i" wrong "the compiles after a journal give '$(set_of "$D")'" "$W/log"
		fi
	done
	# 8d. single files (opt -o, --dump-logits, import -o, -MF) at a planted link: the
	# link is replaced, its target left alone, no temporary left beside it
	k=0
	for cmd in "opt $TINY --passes=dce -o" "run $TINY -w $TINYW --tokens 1 --dump-logits" "import $GGUF -o" \
	           "compile $TINY -w $TINYW -o $W/sd -MD -MF"; do
		k=$((k + 1))
		rm -rf "$W/sf" "$W/sd"; mkdir -p "$W/sf"
		echo victim > "$W/victim1"
		ln -s "$W/victim1" "$W/sf/out"
		read -r -a argv <<< "$cmd"
		run_to 60 "$W/log" "$REL" "${argv[@]}" "$W/sf/out"
		what="elide ${argv[0]}: a link planted at the output"
		if [ "$RC" = 124 ]; then record outdir "file.$k" hang "$what" "$W/log"
		elif crashed "$RC" "$W/log"; then record outdir "file.$k" crash "$what" "$W/log"
		elif [ "$(cat "$W/victim1")" != victim ]; then record outdir "file.$k" wrong "$what; the link's target was written" "$W/log"
		elif [ "$RC" != 0 ] || [ -L "$W/sf/out" ] || [ "$(ls -A "$W/sf")" != out ]; then
			record outdir "file.$k" wrong "$what; rc $RC, '$(ls -A "$W/sf" | tr '\n' ' ')'" "$W/log"
		else record outdir "file.$k" accepted "$what" "$W/log"; fi
	done
	# after the series, one complete compile: the set, nothing else
	run_to 60 "$W/log" "${CA[@]}" "$D"
	if [ "$RC" = 0 ] && [ "$(set_of "$D")" = "$A" ] && [ -z "$(strays "$D")" ]; then record outdir final accepted "a compile after the kills cleans up" "$W/log"
	else record outdir final wrong "after the kills: rc $RC set '$(set_of "$D")' strays '$(strays "$D")'" "$W/log"; fi
	progress outdir
fi


summarize
cat "$OUT/summary.md"
[ ! -s "$OUT/findings.txt" ]
