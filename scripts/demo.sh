#!/usr/bin/env bash
# demo.sh - `make demo`: compiles the example byte-level model (examples/charlm) with
# each policy, generates 200 bytes from a fixed prompt with each, scores the
# committed 4 KB held-out sample, and prints a table: policy, parameters, weight
# blob bytes, tokens/s, held-out bits per byte.
#   bash scripts/demo.sh [BUILD_DIR]      (after `make build`)
set -euo pipefail

BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
POLICIES="dense pruned"
PROMPT="The meaning of life is"
HELDOUT="$ROOT/examples/charlm/heldout_4k.txt"
THREADS=${ELIDE_THREADS:-1}

targets=""
for p in $POLICIES; do targets="$targets charlm_$p"; done
echo "== elide compile examples/charlm/charlm.elide --policy {${POLICIES// /,}}"
cmake --build "$BUILD" --target $targets -j 2 >/dev/null

# parameters: the element count of the weight tensors in the IR the compiler
# emitted (after the policy's passes), read from the manifest's tensor list
params_of() {
	python3 - "$1" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(sum(w.get("elements", 0) for w in m.get("weights", [])
          if w.get("name") != "rope"))
EOF
}

rows=()
for p in $POLICIES; do
	bin="$BUILD/examples/charlm_$p"
	dir="$BUILD/examples/charlm/$p"
	echo
	echo "== $p: 200 bytes from \"$PROMPT\" (temperature 0.8, seed 42, $THREADS thread(s))"
	gen=$("$bin" -w "$dir/charlm.weights" --prompt "$PROMPT" -n 200 --temperature 0.8 --seed 42 \
		--threads "$THREADS" | tee /dev/stderr)
	tps=$(printf '%s\n' "$gen" | sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' | tail -1)
	ev=$("$bin" -w "$dir/charlm.weights" --eval "$HELDOUT" --threads "$THREADS")
	bpb=$(printf '%s\n' "$ev" | sed -n 's/^bits-per-byte \([0-9.]*\).*/\1/p')
	blob=$(stat -c %s "$dir/charlm.weights")
	par=$(params_of "$dir/charlm.json")
	rows+=("$(printf '%-8s %12s %12s %10s %10s' "$p" "$par" "$blob" "$tps" "$bpb")")
done

echo
echo "== charlm: $(basename "$HELDOUT") bits per byte, generation speed ($THREADS thread(s))"
printf '%-8s %12s %12s %10s %10s\n' policy parameters "blob bytes" tokens/s bits/byte
for r in "${rows[@]}"; do echo "$r"; done
