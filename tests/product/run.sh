#!/usr/bin/env bash
# run.sh - ctest `product`: installs the build into a temporary prefix, checks what
# was installed (driver, runtime, header, CMake package, pkg-config file), builds
# examples/product against it with find_package and runs it, then checks the
# dependencies elide_add_model gave the model: touching the calibration file (read
# through the depfile) recompiles it, a second build does nothing.
#   bash tests/product/run.sh BUILD_DIR SOURCE_DIR WORK_DIR
# ELIDE_TEST_CFLAGS: flags for the programs built here (the sanitizers of `make asan`).
set -euo pipefail
BUILD="$1" SRC="$2" WORK="$3"
rm -rf "$WORK"
mkdir -p "$WORK"
PREFIX="$WORK/prefix"
fail() { echo "product: FAIL: $*" >&2; exit 1; }

cmake --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log"
RT=$(cd "$PREFIX" && find . -name libelide_rt.a | head -1)
[ -n "$RT" ] || fail "libelide_rt.a not installed"
LIBDIR=$(dirname "${RT#./}")
for f in bin/elide include/elide_rt.h "$LIBDIR/cmake/elide/elideConfig.cmake" \
	"$LIBDIR/cmake/elide/elideConfigVersion.cmake" "$LIBDIR/cmake/elide/ElideAddModel.cmake" \
	"$LIBDIR/pkgconfig/elide.pc"; do
	[ -e "$PREFIX/$f" ] || fail "$f not installed"
done
"$PREFIX/bin/elide" --version | grep -q "^LLVM version 19" || fail "installed elide does not run"

# pkg-config, relocatable: a program against the runtime alone
cat >"$WORK/rt.c" <<'EOC'
#include <stdio.h>
#include "elide_rt.h"
int main(void) { printf("%s\n", elide_status_name(ELIDE_ERR_ABI)); return 0; }
EOC
# shellcheck disable=SC2046,SC2086
cc ${ELIDE_TEST_CFLAGS:-} -std=c17 "$WORK/rt.c" -o "$WORK/rt" $(PKG_CONFIG_PATH="$PREFIX/$LIBDIR/pkgconfig" pkg-config --cflags --libs elide)
[ "$("$WORK/rt")" = ELIDE_ERR_ABI ] || fail "program built with pkg-config"

# the example product, from a copy of the model folder (its files get touched below)
mkdir -p "$WORK/model"
cp "$SRC/examples/charlm/charlm.elide" "$SRC/examples/charlm/charlm.safetensors" \
	"$SRC/examples/charlm/train_sample.txt" "$WORK/model/"
cmake -S "$SRC/examples/product" -B "$WORK/build" -DCMAKE_PREFIX_PATH="$PREFIX" \
	-DELIDE_EXAMPLE_MODEL_DIR="$WORK/model" -DCMAKE_C_FLAGS="${ELIDE_TEST_CFLAGS:-}" \
	-DCMAKE_EXE_LINKER_FLAGS="${ELIDE_TEST_CFLAGS:-}" >"$WORK/configure.log"
cmake --build "$WORK/build" >"$WORK/build1.log"
grep -q "elide compile charlm" "$WORK/build1.log" || fail "the model was not compiled by the build"
out=$("$WORK/build/product" "The meaning of life is" 40)
echo "$out"
[[ "$out" == "The meaning of life is"* ]] || fail "product output does not start with the prompt"
[ "${#out}" -eq $((22 + 40)) ] || fail "product printed ${#out} bytes, expected 62"
[ ! -e "$WORK/build/charlm_model/charlm.weights" ] || fail "EMBED_WEIGHTS wrote a weights file"
grep -q "train_sample.txt" "$WORK/build/charlm_model/charlm.d" || fail "depfile lacks the calibration file"

# dependencies: nothing changed, nothing runs; the calibration file changed, elide runs
cmake --build "$WORK/build" >"$WORK/build2.log"
! grep -q "elide compile" "$WORK/build2.log" || fail "an up-to-date model was compiled again"
sleep 1
touch "$WORK/model/train_sample.txt"
cmake --build "$WORK/build" >"$WORK/build3.log"
grep -q "elide compile charlm" "$WORK/build3.log" || fail "a changed calibration file did not recompile the model"
touch "$WORK/model/charlm.elide"
cmake --build "$WORK/build" >"$WORK/build4.log"
grep -q "elide compile charlm" "$WORK/build4.log" || fail "a changed model did not recompile"
"$WORK/build/product" "The meaning of life is" 40 | grep -qxF "$out" || fail "rebuilt product differs"
echo "product: ok"
