#!/usr/bin/env python3
"""check_set.py DIR NAME [--journal-ok] - the output set of `elide compile` in DIR is
whole: NAME.o, NAME.h, NAME.weights and NAME.json all there (or none), all of the
same build (the model hash of the header, the manifest, the blob header and the
object agree), and nothing else in DIR (no temporaries).  With --journal-ok an
interrupted commit (.NAME.commit) and the staging directory of a killed compile
(.NAME.new.*) may remain; the set then is what the next compile completes."""
import os, re, struct, sys

d, name = sys.argv[1], sys.argv[2]
journal_ok = "--journal-ok" in sys.argv
want = {name + "." + e for e in ("o", "h", "weights", "json")}
have = set(os.listdir(d)) if os.path.isdir(d) else set()
journal = "." + name + ".commit"
if journal_ok:  # staging of a killed compile: hidden, removed by the next compile
    have = {f for f in have if not f.startswith("." + name + ".new.")}
if journal in have and journal_ok:
    have.discard(journal)
    # the state the next compile completes: the journal's files win
    files = {f: os.path.join(d, journal, f) for f in os.listdir(os.path.join(d, journal))}
else:
    files = {}
extra = have - want
if extra:
    sys.exit("extra files in %s: %s" % (d, sorted(extra)))
paths = {f: files.get(f, os.path.join(d, f)) for f in want if f in have or f in files}
if not paths:
    sys.exit(0)
if set(paths) != want:
    sys.exit("incomplete set: %s" % sorted(paths))
rd = lambda f: open(paths[f], "rb").read()
h = int(re.search(rb"_MODEL_HASH 0x([0-9a-f]+)ULL", rd(name + ".h")).group(1), 16)
j = int(re.search(rb'"model_hash":\s*"0x([0-9a-f]+)"', rd(name + ".json")).group(1), 16)
w = struct.unpack("<Q", rd(name + ".weights")[16:24])[0]
o = struct.pack("<Q", h) in rd(name + ".o")
if not (h == j == w and o):
    sys.exit("mixed set: header %x manifest %x blob %x object %s" % (h, j, w, o))
