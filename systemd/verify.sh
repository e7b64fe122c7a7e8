#!/usr/bin/env bash
# CI check: `systemd-analyze verify` on systemd/vmhostd.service (or the unit given as $1). verify wants
# the ExecStart binary to exist, so the unit is checked from a temporary copy
# whose paths point at this checkout (and at the node actually installed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
unit="${1:-$here/vmhostd.service}"
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze missing (apt-get install -y systemd)" >&2; exit 1; }
node_bin="$(command -v node)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed -e "s#/usr/bin/node#${node_bin}#" \
    -e "s#/opt/vmhostd/bin/vmhostd.js#${root}/bin/vmhostd.js#" \
    "$unit" > "$tmp/vmhostd.service"
# The script is the executable for verify's purposes; make sure one exists.
[ -e "${root}/bin/vmhostd.js" ] || { echo "verify.sh: ${root}/bin/vmhostd.js missing" >&2; exit 1; }
# Units named in Wants=/After= may be absent on a CI host; verify only warns for those.
out="$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$tmp/vmhostd.service" 2>&1)" || { echo "$out" >&2; exit 1; }
# Fail on anything but notes about absent libvirt units.
bad="$(printf '%s\n' "$out" | grep -v -E '^$|(libvirtd|virtqemud)\.(service|socket)' || true)"
if [ -n "$bad" ]; then
  echo "$bad" >&2
  exit 1
fi
echo "systemd-analyze verify: vmhostd.service OK"
