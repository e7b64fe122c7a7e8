#!/usr/bin/python3
"""Baseline for bench/virtio-mem.bench.ts: a virtio-mem resize done with
libvirt's own C library through Debian's python3-libvirt: updateDeviceFlags
(LIVE) with the device XML whose <requested> changed, then wait for the
memory-device size-change callback (libvirt's default event loop, on a thread)
to report current == requested.

usage: libvirt_vmem_resize.py URI
Reads one JSON request per line on stdin: {"uuid", "alias", "xml", "requested_kib", "timeout"}
and answers each with one line: {"ms": <update call to the last callback>} or {"error": ...}.
The time is taken inside this process (no pipe hop): the floor.
"""
import sys
import threading
import time

import libvirt
from libvirt_peer import connect, serve

lock = threading.Lock()
waiting = {}  # (uuid, alias) -> (target KiB, threading.Event)


def on_size(_conn, dom, alias, size, _opaque):
    key = (dom.UUIDString(), alias)
    with lock:
        w = waiting.get(key)
    if w is not None and size == w[0]:
        w[1].set()


def main():
    conn = connect(sys.argv[1], libvirt.VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE, on_size)

    def resize(req):
        key = (req["uuid"], req["alias"])
        dom = conn.lookupByUUIDString(req["uuid"])
        ev = threading.Event()
        with lock:
            waiting[key] = (req["requested_kib"], ev)  # interest first
        try:
            t0 = time.perf_counter()
            dom.updateDeviceFlags(req["xml"], libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if not ev.wait(req.get("timeout", 120)):
                raise TimeoutError(f"{req['alias']} never reached {req['requested_kib']} KiB")
            return (time.perf_counter() - t0) * 1000.0
        finally:
            with lock:
                waiting.pop(key, None)

    serve(resize)
    conn.close()


if __name__ == "__main__":
    main()
