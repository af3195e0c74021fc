#!/bin/sh
# prep.sh INPUTS POLICY OUT: prints Inputs/tiny.elide with policy POLICY as textual IR
# into OUT, with the weights file and the calibration file named by absolute paths
# (a .eir carries its weights path; elide opt has no -w).
set -e
elide opt "$1/tiny.elide" --policy "$2" -o "$3.in"
sed -e "s|^  layers = \(.*\)\$|  layers = \1\n  weights = \"$1/tiny.safetensors\";|" \
    -e "s|\"calib.txt\"|\"$1/calib.txt\"|" "$3.in" > "$3"
