#!/usr/bin/python3
"""Baseline for bench/libvirt-client.bench.ts: libvirt's own C library through
Debian's python3-libvirt (what VDSM uses) doing the same getXMLDesc calls.

usage: libvirt_getxml.py URI UUID CALLS THREADS ROUNDS WARMUP
Prints JSON: {"seq_ms": [...per-call latency...], "conc_calls_per_s": [...per round...]}
"""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import libvirt


def main():
    uri, uuid = sys.argv[1], sys.argv[2]
    calls, threads, rounds, warmup = (int(a) for a in sys.argv[3:7])
    conn = libvirt.open(uri)
    dom = conn.lookupByUUIDString(uuid)
    for _ in range(warmup):
        dom.XMLDesc(0)

    seq = []
    for _ in range(calls):
        t0 = time.perf_counter()
        dom.XMLDesc(0)
        seq.append((time.perf_counter() - t0) * 1000.0)

    per_round = calls // rounds
    conc = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda _: dom.XMLDesc(0), range(threads)))  # start the threads
        for _ in range(rounds):
            t0 = time.perf_counter()
            list(pool.map(lambda _: dom.XMLDesc(0), range(per_round)))
            conc.append(per_round / (time.perf_counter() - t0))

    conn.close()
    json.dump({"seq_ms": seq, "conc_calls_per_s": conc}, sys.stdout)


if __name__ == "__main__":
    main()
