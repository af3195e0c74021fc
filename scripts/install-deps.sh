#!/usr/bin/env bash
# install-deps.sh - installs, from Debian packages and only when missing, everything
# elide needs to build, test and benchmark.  Idempotent: prints what it installs and
# nothing else when all is present.  Runs as root, or through sudo when available.
set -euo pipefail

PACKAGES=(
	cmake make gcc
	clang-19 libclang-rt-19-dev   # fuzzing and sanitizers
	llvm-19-dev llvm-19-tools     # LLVM C API, FileCheck, lit
	flex bison
	libcriterion-dev libcjson-dev
	python3                       # runs lit
	pkgconf                       # the test of the installed pkg-config file
	libopenblas-dev               # benchmarks only: the kernel speed reference
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "install-deps: installing: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO=(sudo -n)
else
	echo "install-deps: error: missing packages (${missing[*]}) and not root;" \
		"run as root or make sudo available" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
