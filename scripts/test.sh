#!/usr/bin/env bash
# The test suite on a fresh Debian 12 host, as root: stands up the test host
# (Debian packages, libvirtd, the guest kernel and initramfs, the Debian guest; all idempotent,
# instant when already done), installs npm packages if missing, then runs the
# unit, integration (real libvirtd + QEMU guests) and disruptive tests, and
# ends with one line of totals.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash test/host/setup-host.sh
bash test/host/build-guest.sh
bash test/host/build-debian-guest.sh
[[ -d node_modules ]] || npm ci --no-audit --no-fund
rm -rf .cache/test-results
# libvirtd crashes of this run, reported by the summary (test/host/libvirtd-supervised.sh).
crash_log=/var/log/libvirt/vmhostd-libvirtd-crashes.log
crash_lines=$( (cat "$crash_log" 2>/dev/null || true) | wc -l)
rc=0
npm test || rc=$?
mkdir -p .cache/test-results
tail -n +$((crash_lines + 1)) "$crash_log" 2>/dev/null >.cache/test-results/libvirtd-crashes.log || true
node scripts/test-summary.mjs
exit "$rc"
