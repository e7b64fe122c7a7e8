"""What the python3-libvirt baselines of bench/ share (libvirt_unplug.py,
libvirt_vmem_resize.py): a connection whose events arrive on a thread
running libvirt's default event loop, and the line protocol of
bench/python-peer.ts: {"ready": true} once connected, then one JSON answer
line per JSON request line, {"ms": ...} or {"error": ...}.
"""
import json
import sys
import threading

import libvirt


def _loop():
    while True:
        libvirt.virEventRunDefaultImpl()


def connect(uri, event_id, callback):
    """Opens uri with callback registered for event_id on every domain."""
    libvirt.virEventRegisterDefaultImpl()  # before the connection opens
    threading.Thread(target=_loop, daemon=True).start()
    conn = libvirt.open(uri)
    conn.domainEventRegisterAny(None, event_id, callback, None)
    return conn


def serve(handle):
    """Answers each request line with {"ms": handle(request)}, or {"error": ...} if it raised."""
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            out = {"ms": handle(req)}
        except Exception as e:  # reported to the bench, which fails the run
            out = {"error": str(e)}
        print(json.dumps(out), flush=True)
