#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS - runs every fuzz_* target of BUILD_DIR/tools/fuzz for
# SECONDS each (`make fuzz`: 600; .ci/run: 20), seeded with the committed examples
# and tests (copied into a fresh corpus
# directory, so the tree stays clean; files under 256 KB; the blob fuzzer gets the
# blob of a small test model, compiled by the fuzz build's elide).  Fails on the first crash, leak or hang;
# the reproducer is left in BUILD_DIR/fuzz-out/.
set -euo pipefail
build=$(cd "${1:?usage: run.sh BUILD_DIR SECONDS}" && pwd)
secs=${2:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$build/fuzz-out"
mkdir -p "$out"
shopt -s nullglob
fuzzers=("$build"/tools/fuzz/fuzz_*)
if [ ${#fuzzers[@]} -eq 0 ]; then
  echo "run.sh: no fuzzers in $build/tools/fuzz (build the fuzz_all target)" >&2
  exit 1
fi
for f in "${fuzzers[@]}"; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  corpus="$out/$name-corpus"
  rm -rf "$corpus"
  mkdir -p "$corpus"
  case "$name" in
    fuzz_eir*) pattern='*.eir' ;;
    fuzz_safetensors*|fuzz_weights*) pattern='*.safetensors' ;;
    fuzz_gguf*) pattern='*.gguf' ;;
    fuzz_blob*|fuzz_model*) pattern='*.weights' ;;
    *) pattern='*.elide' ;;
  esac
  case "$name" in   # weights files and blobs of the small test model are ~14 KB
    fuzz_safetensors*|fuzz_weights*|fuzz_blob*|fuzz_model*) maxlen=32768 ;;
    *) maxlen=8192 ;;
  esac
  find "$root/examples" "$root/tests" -name "$pattern" -size -256k -exec cp -t "$corpus" {} + 2>/dev/null || true
  if [ "$name" = fuzz_blob ] || [ "$name" = fuzz_model ]; then   # seeds: the blob of the small test model, compiled here
    "$build/tools/elide" compile "$root/tests/passes/prune-structured/Inputs/tiny.elide" \
      -w "$root/tests/passes/prune-structured/Inputs/tiny.safetensors" -o "$out/blob-seed" >/dev/null
    cp "$out/blob-seed/tiny.weights" "$corpus/"
  fi
  echo "== $name: $(ls "$corpus" | wc -l) seeds, ${secs}s"
  (cd "$out" && "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen \
     -print_final_stats=1 "$corpus")
done
echo "fuzz: no crash, leak or hang"
