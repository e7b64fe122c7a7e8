#!/usr/bin/env bash
# vmhostd demo, on a fresh Debian 12 host, as root:
#   bash scripts/demo.sh
# Sets up libvirt + QEMU and the test guest (test/host/), builds vmhostd, starts
# a demo VM (cooperative guest, "vmhostd-demo") and the daemon, then shows a
# memory hot plug and a hot unplug through vmhost-client. The daemon is left
# running. Idempotent: a second run reuses the VM and restarts the daemon on
# the fresh build. Pauses between steps only on a terminal (never with CI=true
# or DEMO_NONINTERACTIVE=1). Exits non-zero on any failure.
#
# Environment: VMHOSTD_DEMO_PORT (54321), VMHOSTD_DEMO_VM (vmhostd-demo),
# VMHOSTD_DEMO_STATE (/var/lib/vmhostd-demo: log, pid file, guest console).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${VMHOSTD_DEMO_PORT:-54321}"
vm="${VMHOSTD_DEMO_VM:-vmhostd-demo}"
state="${VMHOSTD_DEMO_STATE:-/var/lib/vmhostd-demo}"
guest_dir="${VMHOST_GUEST_DIR:-$repo/.cache/guest}"
url="ws://127.0.0.1:${port}/jsonrpc"
pidfile="$state/vmhostd.pid"
logfile="$state/vmhostd.log"
console="$state/console.log"
export VMHOSTD_URL="$url"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf '\ndemo: ERROR: %s\n' "$*" >&2; exit 1; }
interactive() { [[ -t 0 && -t 1 && -z "${CI:-}" && -z "${DEMO_NONINTERACTIVE:-}" ]]; }
pause() { if interactive; then read -r -p "    [Enter] to continue " _; fi; }
client() { printf '\n    $ vmhost-client %s\n' "$*"; node "$repo/bin/vmhost-client.js" "$@"; }

# Waits up to $1 seconds for the command in $2... to succeed.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
guest_memtotal() { grep -aoE 'VMHOST-GUEST (MEMTOTAL kib|READY memtotal_kib)=[0-9]+' "$console" 2>/dev/null | tail -n1 | grep -oE '[0-9]+$'; }
memtotal_at_least() { local m; m=$(guest_memtotal) && ((m >= $1)); }
memtotal_at_most() { local m; m=$(guest_memtotal) && ((m <= $1)); }

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages, starts libvirtd and a VM)"
cd "$repo"
mkdir -p "$state"

step "1/6 Host: libvirt, QEMU and the test guest (test/host/setup-host.sh, build-guest.sh)"
bash test/host/setup-host.sh
bash test/host/build-guest.sh
command -v node >/dev/null || die "node (>= 20) is required"
[[ $(node -p 'process.versions.node.split(".")[0]') -ge 20 ]] || die "node >= 20 is required (found $(node --version))"

step "2/6 Build vmhostd"
if [[ ! -d node_modules ]]; then npm ci --no-audit --no-fund; fi
npm run build --silent
info "built dist/ ($(node -p 'require("./package.json").version'))"

step "3/6 Demo VM '$vm' (cooperative guest: memhp_default_state=online_movable)"
if virsh -q -c qemu:///system dominfo "$vm" >/dev/null 2>&1; then
  info "reusing the existing domain $vm"
else
  uuid="$(cat /proc/sys/kernel/random/uuid)"
  xml="$state/$vm.xml"
  node --import tsx scripts/demo-domain.ts "$vm" "$uuid" "$console" "$guest_dir" >"$xml"
  virsh -q -c qemu:///system define "$xml" >/dev/null
  info "defined $vm ($uuid) from $xml"
fi
if [[ "$(virsh -q -c qemu:///system domstate "$vm")" != running ]]; then
  rm -f "$console"
  virsh -q -c qemu:///system start "$vm" >/dev/null
  info "started $vm; waiting for the guest to boot (about 10-30 s under TCG)"
fi
wait_for 120 grep -aq 'VMHOST-GUEST READY' "$console" || die "the guest did not boot; console: $console"
info "guest ready, MemTotal $(guest_memtotal) KiB"

step "4/6 Start vmhostd on $url (log: $logfile)"
if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  old="$(cat "$pidfile")"
  info "stopping the previous demo daemon (pid $old) to run the fresh build"
  kill -TERM "$old"
  wait_for 30 bash -c "! kill -0 $old 2>/dev/null" || die "daemon pid $old did not stop"
fi
rm -f "$pidfile"
if node bin/vmhost-client.js Host ping >/dev/null 2>&1; then
  die "something else already answers on $url (another vmhostd?); stop it or set VMHOSTD_DEMO_PORT"
fi
nohup node bin/vmhostd.js --listen "127.0.0.1:$port" >>"$logfile" 2>&1 </dev/null &
echo $! >"$pidfile"
if ! wait_for 60 bash -c "node '$repo/bin/vmhost-client.js' Host ping >/dev/null 2>&1"; then
  tail -n 20 "$logfile" >&2 || true
  die "vmhostd did not become ready; log: $logfile"
fi
info "vmhostd is running (pid $(cat "$pidfile"))"
pause

step "5/6 Hot plug 256 MiB"
client vm list
before_kib=$(guest_memtotal)
alias="ua-demo-$(date +%s)"
client vm plug "$vm" 256MiB --alias "$alias"
wait_for 60 memtotal_at_least $((before_kib + 200 * 1024)) || die "the guest never onlined the new DIMM"
info "guest MemTotal: $before_kib KiB -> $(guest_memtotal) KiB (the guest onlined the DIMM as movable)"
client vm show "$vm"
pause

step "6/6 Hot unplug it again"
plugged_kib=$(guest_memtotal)
client vm unplug "$vm" "$alias" --timeout 30
wait_for 30 memtotal_at_most $((plugged_kib - 200 * 1024)) || die "the guest MemTotal did not drop"
info "guest MemTotal: $plugged_kib KiB -> $(guest_memtotal) KiB"
client vm show "$vm"
if node bin/vmhost-client.js --json vm show "$vm" | grep -q "\"$alias\""; then die "DIMM $alias is still listed"; fi
info "DIMM $alias is gone."

cat <<EOF

Done. vmhostd keeps running (pid $(cat "$pidfile"), log $logfile). Try:
  export VMHOSTD_URL=$url
  node bin/vmhost-client.js vm show $vm
  node bin/vmhost-client.js vm plug $vm 128MiB
  node bin/vmhost-client.js vm set-memory $vm 512MiB
  node bin/vmhost-client.js events                 # follow notifications (Ctrl-C)
  node bin/vmhost-client.js Host getCapabilities   # any method, raw
  web console: http://127.0.0.1:$port/ (ssh -L $port:127.0.0.1:$port this-host)
  logs: tail -f $logfile | npx pino-pretty
Stop:
  kill \$(cat $pidfile)
  virsh destroy $vm && virsh undefine $vm         # remove the demo VM
EOF
