#!/usr/bin/python3
"""Baseline for bench/real-guest.bench.ts: a DIMM unplug done the way VDSM does
it, with libvirt's own C library through Debian's python3-libvirt:
detachDeviceFlags(LIVE), then wait for the domain's device-removed callback
(delivered on a thread running libvirt's default event loop).

usage: libvirt_unplug.py URI
Reads one JSON request per line on stdin: {"uuid": ..., "alias": ..., "xml": ...}
and answers each with one line: {"ms": <detach call to callback>} or {"error": ...}.
The time is taken inside this process, so no pipe hop is counted: the floor.
"""
import sys
import threading
import time

import libvirt
from libvirt_peer import connect, serve

removed = {}  # alias -> threading.Event, set by the callback
lock = threading.Lock()


def on_removed(_conn, _dom, dev, _opaque):
    # libvirt names a DIMM by its device alias (some versions: mem<alias>).
    alias = dev[3:] if dev.startswith("memua-") else dev
    with lock:
        ev = removed.get(alias)
    if ev is not None:
        ev.set()


def main():
    conn = connect(sys.argv[1], libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, on_removed)

    def unplug(req):
        dom = conn.lookupByUUIDString(req["uuid"])
        ev = threading.Event()
        with lock:
            removed[req["alias"]] = ev  # interest first: the event may beat the reply
        try:
            t0 = time.perf_counter()
            dom.detachDeviceFlags(req["xml"], libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if not ev.wait(req.get("timeout", 60)):
                raise TimeoutError(f"no device-removed for {req['alias']}")
            return (time.perf_counter() - t0) * 1000.0
        finally:
            with lock:
                removed.pop(req["alias"], None)

    serve(unplug)
    conn.close()


if __name__ == "__main__":
    main()
