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
import json
import sys
import threading
import time

import libvirt

lock = threading.Lock()
waiting = {}  # (uuid, alias) -> (target KiB, threading.Event)


def on_size(_conn, dom, alias, size, _opaque):
    key = (dom.UUIDString(), alias)
    with lock:
        w = waiting.get(key)
    if w is not None and size == w[0]:
        w[1].set()


def loop():
    while True:
        libvirt.virEventRunDefaultImpl()


def main():
    libvirt.virEventRegisterDefaultImpl()  # before the connection opens
    threading.Thread(target=loop, daemon=True).start()
    conn = libvirt.open(sys.argv[1])
    conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE, on_size, None)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        key = (req["uuid"], req["alias"])
        try:
            dom = conn.lookupByUUIDString(req["uuid"])
            ev = threading.Event()
            with lock:
                waiting[key] = (req["requested_kib"], ev)  # interest first
            t0 = time.perf_counter()
            dom.updateDeviceFlags(req["xml"], libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if not ev.wait(req.get("timeout", 120)):
                raise TimeoutError(f"{req['alias']} never reached {req['requested_kib']} KiB")
            ms = (time.perf_counter() - t0) * 1000.0
            print(json.dumps({"ms": ms}), flush=True)
        except Exception as e:  # reported to the bench, which fails the run
            print(json.dumps({"error": str(e)}), flush=True)
        finally:
            with lock:
                waiting.pop(key, None)
    conn.close()


if __name__ == "__main__":
    main()
