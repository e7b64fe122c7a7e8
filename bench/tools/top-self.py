#!/usr/bin/python3
"""Profiling aid: top self-time functions of a .cpuprofile (usage: top-self.py FILE [N])."""
import collections
import json
import sys

p = json.load(open(sys.argv[1]))
by = {n["id"]: n for n in p["nodes"]}
c = collections.Counter()
for i, s in enumerate(p["samples"]):
    f = by[s]["callFrame"]
    url = f["url"].replace("file:///work/main/", "").split("node_modules/")[-1]
    c[f"{f['functionName'] or '(anon)'} {url}:{f['lineNumber'] + 1}"] += p["timeDeltas"][i]
t = sum(c.values())
for k, v in c.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 25):
    print(f"{v / t * 100:5.1f}% {v / 1000:8.1f} ms  {k}")

if "--inclusive" in sys.argv:
    # Inclusive time of each src/ function (a frame counted once per sample).
    parent = {}
    for n in p["nodes"]:
        for ch in n.get("children", []):
            parent[ch] = n["id"]
    inc = collections.Counter()
    for i, s in enumerate(p["samples"]):
        seen = set()
        node = s
        while node is not None:
            f = by[node]["callFrame"]
            if "/src/" in f["url"] or "node_modules/ws" in f["url"] or "pino" in f["url"] or "json-rpc" in f["url"]:
                k = f"{f['functionName'] or '(anon)'} {f['url'].split('/')[-1]}:{f['lineNumber'] + 1}"
                if k not in seen:
                    inc[k] += p["timeDeltas"][i]
                    seen.add(k)
            node = parent.get(node)
    print("--- inclusive")
    for k, v in inc.most_common(40):
        print(f"{v / 1000:8.1f} ms  {k}")
