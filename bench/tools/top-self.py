#!/usr/bin/python3
"""Profiling aid: top self-time functions of a .cpuprofile.

usage: top-self.py FILE [N] [--inclusive] [--from S] [--timeline]
  --from S: only samples from S seconds into the profile (skip start-up)
  --timeline: CPU (not idle) per 100 ms of the profile, to choose --from
"""
import collections
import json
import sys

p = json.load(open(sys.argv[1]))
by = {n["id"]: n for n in p["nodes"]}
start = float(sys.argv[sys.argv.index("--from") + 1]) * 1e6 if "--from" in sys.argv else 0.0
# Sample indices at or after `start` (timeDeltas are microseconds).
kept = []
clock = 0
for i, d in enumerate(p["timeDeltas"]):
    clock += d
    if clock >= start:
        kept.append(i)
if "--timeline" in sys.argv:
    buckets = collections.Counter()
    clock = 0
    for i, s in enumerate(p["samples"]):
        clock += p["timeDeltas"][i]
        if by[s]["callFrame"]["functionName"] != "(idle)":
            buckets[int(clock / 100_000)] += p["timeDeltas"][i]
    print(" ".join(f"{k / 10:.1f}s:{v // 1000}" for k, v in sorted(buckets.items())))
    sys.exit(0)
N = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 25
c = collections.Counter()
for i in kept:
    s = p["samples"][i]
    f = by[s]["callFrame"]
    url = f["url"].replace("file:///work/main/", "").split("node_modules/")[-1]
    c[f"{f['functionName'] or '(anon)'} {url}:{f['lineNumber'] + 1}"] += p["timeDeltas"][i]
t = sum(c.values())
for k, v in c.most_common(N):
    print(f"{v / t * 100:5.1f}% {v / 1000:8.1f} ms  {k}")

if "--inclusive" in sys.argv:
    # Inclusive time of each src/ function (a frame counted once per sample).
    parent = {}
    for n in p["nodes"]:
        for ch in n.get("children", []):
            parent[ch] = n["id"]
    inc = collections.Counter()
    for i in kept:
        s = p["samples"][i]
        seen = set()
        node = s
        while node is not None:
            f = by[node]["callFrame"]
            if "/src/" in f["url"] or "/dist/" in f["url"] or "node_modules/ws" in f["url"] or "pino" in f["url"] or "json-rpc" in f["url"]:
                k = f"{f['functionName'] or '(anon)'} {f['url'].split('/')[-1]}:{f['lineNumber'] + 1}"
                if k not in seen:
                    inc[k] += p["timeDeltas"][i]
                    seen.add(k)
            node = parent.get(node)
    print("--- inclusive")
    for k, v in inc.most_common(N):
        print(f"{v / 1000:8.1f} ms  {k}")
