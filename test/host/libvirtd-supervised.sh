#!/usr/bin/env bash
# The test host's libvirtd, kept up the way systemd keeps it up on a real host
# (libvirtd.service: Restart=on-failure): run in the foreground, started again
# when it dies of a signal or exits non-zero, left down when it stops cleanly
# (SIGTERM makes it exit 0, which is how the restart tests stop it).
#
# Why: libvirt 9.0 (Debian 12) segfaults when a client leaves while a worker
# thread is finishing one of its calls (docs/design.md, "libvirtd's close race");
# the tests SIGKILL daemons on purpose. Each crash is a line in the crash log,
# and the suite's closing summary prints the ones of its run.
#
# Started detached by setup-host.sh and test/helpers/libvirtd.ts. Gives up after
# 5 starts within 10 s, as systemd's default start limit does.
set -uo pipefail

# The same path as in scripts/test.sh and test/helpers/libvirtd.ts.
CRASH_LOG=/var/log/libvirt/vmhostd-libvirtd-crashes.log
PIDFILE=/run/vmhostd-libvirtd-supervisor.pid
BURST=5
INTERVAL_S=10

echo $$ >"$PIDFILE"
trap 'rm -f "$PIDFILE"' EXIT

starts=()
while :; do
  now=$(date +%s)
  recent=()
  for t in "${starts[@]}"; do ((now - t < INTERVAL_S)) && recent+=("$t"); done
  starts=("${recent[@]}" "$now")
  if ((${#starts[@]} > BURST)); then
    echo "$(date -Is) libvirtd started $BURST times within ${INTERVAL_S}s; giving up" | tee -a "$CRASH_LOG" >&2
    exit 1
  fi
  libvirtd
  rc=$?
  ((rc == 0)) && exit 0
  how="status $rc"
  ((rc > 128)) && how="signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
  echo "$(date -Is) libvirtd died ($how); restarting it" | tee -a "$CRASH_LOG" >&2
  sleep 0.1
done
