#!/usr/bin/env python3
"""skip_variants.py NAME.json NAME.eir ENTRY [N_MAX N_MIN CTX CACHE] - the step
variants of a layer-skip policy as `elide compile` wrote them: the manifest's paths
of ENTRY (one per ret), the layers of each, and the branches of the entry, counted
twice (the manifest's op list and the `if` lines of the .eir): a variant holds no
branch when the entry has one `if` per variant but the last (its dispatch) and no
`if` nested in another.  With a schedule linear(N_MAX, N_MIN, CTX) and the KV
cache's length, it also checks one variant per distinct budget of the positions
the cache holds (budget(t) = N_MIN + ceil((N_MAX - N_MIN) (CTX - t) / CTX), N_MIN
from CTX on)."""
import json, re, sys

man, eir, entry = sys.argv[1], sys.argv[2], sys.argv[3]
e = next(x for x in json.load(open(man))["entries"] if x["name"] == entry)
layers = [p["layers"] for p in e["paths"]]
ifs = depth = maxdepth = 0
for op in e["ops"]:
    if op == "if":
        ifs += 1
        depth += 1
        maxdepth = max(maxdepth, depth)
    elif op == "end":
        depth -= 1
# the same count from the text: the entry's `if` lines
text = open(eir).read()
body = re.search(r"^entry \w+ @%s\(.*?^}" % entry, text, re.S | re.M).group(0)
eir_ifs = len(re.findall(r"^\s+if ", body, re.M))
print("%s: %d paths, layers %s, %d if (eir %d), depth %d" %
      (entry, len(layers), " ".join(map(str, sorted(layers))), ifs, eir_ifs, maxdepth))
ok = ifs == eir_ifs and ifs == len(layers) - 1 and maxdepth <= 1
print("no branch inside a variant" if ok else "a variant holds a branch")
if len(sys.argv) > 4:
    nmax, nmin, ctx, cache = map(int, sys.argv[4:8])
    budgets = {nmin if t >= ctx else nmin + -(-(nmax - nmin) * (ctx - t) // ctx) for t in range(cache)}
    same = sorted(budgets) == sorted(layers) and len(set(layers)) == len(layers)
    print("budgets %s: %s" % (" ".join(map(str, sorted(budgets))),
                              "one variant each" if same else "the variants differ"))
