#!/usr/bin/env bash
# Stands up the integration-test host on a Debian 12 machine, as root, without
# systemd: packages, the libvirt-qemu account, qemu.conf, virtlogd + libvirtd.
# Idempotent: a second run changes nothing and returns in about a second.
set -euo pipefail

log() { printf '[setup-host] %s\n' "$*"; }
die() { printf '[setup-host] ERROR: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts libvirtd)"

PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
  busybox-static python3-libvirt cpio openssl systemd chromium mmdebstrap zstd systemd-container)
# openssl: the lab PKI of the TLS tests; systemd: systemd-analyze verify of our unit.
# mmdebstrap, zstd: the Debian test guest (build-debian-guest.sh); systemd-container:
# systemd-nspawn, which boots that guest's root file system to test the unit under systemd.
# chromium: for the web console's browser test (driven by playwright-core).
QEMU_CONF=/etc/libvirt/qemu.conf
# Bump when the qemu.conf content below changes so existing hosts get it rewritten.
CONF_MARK='# vmhostd-test-host qemu.conf v1'
LIBVIRT_URI=qemu:///system
READY_DEADLINE_S=${VMHOSTD_LIBVIRT_DEADLINE_S:-30}

# 1. Packages (apt-get update only when something is missing: it is the slow part).
missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # No recommends: we want neither dnsmasq nor the network/storage driver zoo.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "packages present"
fi

# 2. The account libvirt's qemu driver looks up at start, even when told to run QEMU as root.
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
  useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home \
    --shell /usr/sbin/nologin libvirt-qemu

# 3. qemu.conf: QEMU runs as root (serial log files and kernels under /var/lib are
# then readable without relabelling), and no security driver: AppArmor profiles or
# DAC relabelling would only get in the way on a throwaway test host.
wrote_conf=false
if [[ ! -f $QEMU_CONF ]] || ! grep -qxF "$CONF_MARK" "$QEMU_CONF"; then
  if [[ -f $QEMU_CONF ]] && ! grep -q '^# vmhostd-test-host' "$QEMU_CONF"; then
    cp -n "$QEMU_CONF" "$QEMU_CONF.orig-before-vmhostd"
    log "kept the previous qemu.conf as $QEMU_CONF.orig-before-vmhostd"
  fi
  mkdir -p "$(dirname "$QEMU_CONF")"
  cat >"$QEMU_CONF" <<EOF
$CONF_MARK
# Written by vmhostd test/host/setup-host.sh; rewritten whenever the marker above is missing or outdated.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
EOF
  wrote_conf=true
  log "wrote $QEMU_CONF"
fi

mkdir -p /var/log/libvirt /var/log/libvirt/qemu /var/lib/libvirt/qemu /run/libvirt

# 4. Daemons. pidfiles are the daemons' own (libvirtd writes one in the foreground too).
running() { # name pidfile
  local pid
  [[ -f $2 ]] && pid=$(<"$2") && [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]
}

if ! running virtlogd /run/virtlogd.pid; then
  log "starting virtlogd"
  virtlogd -d
fi

if running libvirtd /run/libvirtd.pid && $wrote_conf; then
  log "restarting libvirtd to apply qemu.conf"
  pid=$(</run/libvirtd.pid)
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && die "libvirtd (pid $pid) did not stop within 10 s"
fi
if ! running libvirtd /run/libvirtd.pid; then
  log "starting libvirtd (restarted if it crashes, as systemd would: libvirtd-supervised.sh)"
  setsid -f bash "$(dirname "${BASH_SOURCE[0]}")/libvirtd-supervised.sh" </dev/null \
    >>/var/log/libvirt/vmhostd-libvirtd-supervisor.log 2>&1
fi

# 5. Wait until the socket answers a real call.
deadline=$((SECONDS + READY_DEADLINE_S))
until out=$(virsh -c "$LIBVIRT_URI" version 2>&1); do
  if ((SECONDS >= deadline)); then
    die "libvirtd did not answer 'virsh -c $LIBVIRT_URI version' within ${READY_DEADLINE_S}s:
$out
(see /var/log/libvirt/ and try 'libvirtd -v' in the foreground)"
  fi
  sleep 0.2
done
log "libvirtd ready: $(printf '%s' "$out" | grep -i 'running hypervisor' || true)"
