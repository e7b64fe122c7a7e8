#!/usr/bin/env bash
# Builds the Debian 12 test guest from Debian packages, with mmdebstrap from the
# host's apt sources: minbase + systemd-sysv, udev, kmod, qemu-guest-agent, the
# virtio modules of the same cloud kernel the busybox guests boot
# (.cache/guest/vmlinuz, from test/host/build-guest.sh), and a few settings for
# a quick headless boot. Output, cached, in .cache/debian/:
#   rootfs/            the root file system (also booted by systemd-nspawn)
#   initramfs.cpio.zst that tree as the guest's initramfs: the guest runs from RAM
#   key                hash of the inputs; a second run with the same key only hashes
#   script.sha256      hash of this script (the test helper refuses a stale build)
# Needs root (mmdebstrap's root mode, mknod). VMHOST_GUEST_REFRESH=1 rebuilds.
set -euo pipefail

log() { printf '[build-debian-guest] %s\n' "$*"; }
die() { printf '[build-debian-guest] ERROR: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
kdir=${VMHOST_GUEST_DIR:-$repo/.cache/guest}
out=${VMHOST_DEBIAN_DIR:-$repo/.cache/debian}
PACKAGES=systemd-sysv,udev,kmod,qemu-guest-agent
# The virtio modules the guest needs for its agent channel (the rest of the
# kernel's 90 MB of modules would only slow the initramfs down).
MODULES=(drivers/virtio drivers/char/virtio_console.ko)

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap root mode)"
for tool in mmdebstrap apt-get dpkg-deb cpio zstd sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (run test/host/setup-host.sh first)"
done
[[ -s $kdir/kernel-version && -s $kdir/vmlinuz ]] || die "no kernel in $kdir (run test/host/build-guest.sh first)"
kpkg=$(<"$kdir/kernel-version")

# The host's Debian apt sources, as apt reads them (deb822 first).
sources=()
for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
  [[ -s $f ]] && grep -qE '^[[:space:]]*(deb|URIs:)' "$f" && sources+=("$f")
done
((${#sources[@]})) || die "no Debian apt sources on this host (/etc/apt/sources.list[.d/debian.sources])"

key=$({
  cat "${BASH_SOURCE[0]}" "${sources[@]}"
  echo "$kpkg"
} | sha256sum | cut -d' ' -f1)
if [[ ${VMHOST_GUEST_REFRESH:-} != 1 && -s $out/initramfs.cpio.zst && -s $out/script.sha256 && -d $out/rootfs &&
  $(cat "$out/key" 2>/dev/null) == "$key" ]]; then
  log "cached ($out)"
  exit 0
fi

mkdir -p "$out"
tmp=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs

log "mmdebstrap bookworm minbase + $PACKAGES (from ${sources[*]})"
# merged-usr hook: /usr merged by mmdebstrap itself, so Debian's usrmerge (and
# the 50 MB of perl it pulls in) stay out.
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  bookworm "$root" "${sources[@]}"

log "virtio modules from $kpkg"
(cd "$tmp" && apt-get download -q "$kpkg" 2>&1 | grep -v unsandboxed || true)
deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1 || true)
[[ -n $deb ]] || die "apt-get download $kpkg produced no .deb"
dpkg-deb -x "$deb" "$tmp/kernel"
kver=$(ls "$tmp/kernel/lib/modules")
src=$tmp/kernel/lib/modules/$kver
dst=$root/lib/modules/$kver
mkdir -p "$dst/kernel"
cp "$src"/modules.builtin "$src"/modules.builtin.modinfo "$src"/modules.order "$dst/"
for m in "${MODULES[@]}"; do
  mkdir -p "$dst/kernel/$(dirname "$m")"
  cp -a "$src/kernel/$m" "$dst/kernel/$(dirname "$m")/"
done
chroot "$root" /sbin/depmod "$kver" # the guest's own kmod

log "guest settings"
# PID 1 of the initramfs is systemd; without /etc/initrd-release it runs the
# root file system as the real system (no switch-root).
ln -sf /lib/systemd/systemd "$root/init"
echo vmhost-debian >"$root/etc/hostname"
: >"$root/etc/fstab"
# A fixed machine ID: no first-boot logic (systemd-firstboot would prompt on the console).
printf '%s\n' "$(echo vmhostd-test-debian | sha256sum | cut -c1-32)" >"$root/etc/machine-id"
# Masked: what a headless test guest in RAM does not need and what costs
# seconds per unit under TCG: timers (apt, fstrim, e2scrub, dpkg backups),
# gettys and utmp, first-boot prompts, modprobes and mounts of unused kernel
# features, a random seed and a remount of a root that is already RAM.
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer \
  e2scrub_reap.service getty@tty1.service serial-getty@ttyS0.service getty-static.service \
  systemd-update-utmp.service systemd-update-utmp-runlevel.service systemd-user-sessions.service \
  systemd-firstboot.service systemd-pstore.service systemd-random-seed.service systemd-remount-fs.service \
  modprobe@fuse.service modprobe@loop.service modprobe@dm_mod.service modprobe@drm.service \
  modprobe@efi_pstore.service modprobe@configfs.service sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount dev-mqueue.mount \
  systemd-journal-flush.service proc-sys-fs-binfmt_misc.automount systemd-binfmt.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$u"
done
# The journal stays in RAM (/run): there is no disk.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/volatile.conf"
rm -rf "$root/var/cache/apt/"*.bin "$root/var/lib/apt/lists/"* "$root/var/log/"*.log
# Not needed at run time and ~40 MB less for the kernel to unpack on every
# boot: udev's hardware database (names of USB/PCI vendors), iconv modules,
# time zones, debconf's cache.
rm -rf "$root/usr/lib/udev/hwdb.bin" "$root/usr/lib/udev/hwdb.d" "$root/usr/lib/x86_64-linux-gnu/gconv" \
  "$root/usr/share/zoneinfo" "$root/var/cache/debconf/"*-old
ln -sf /dev/null "$root/etc/systemd/system/systemd-hwdb-update.service"

log "initramfs"
(cd "$root" && find . -xdev -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet) |
  zstd -q -T0 -6 -o "$tmp/initramfs.cpio.zst"

rm -rf "$out/rootfs" "$out/initramfs.cpio.zst"
mv "$root" "$out/rootfs"
mv "$tmp/initramfs.cpio.zst" "$out/initramfs.cpio.zst"
echo "$key" >"$out/key"
sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1 >"$out/script.sha256" # checked by test/helpers/debian-guest.ts
log "rootfs $(du -sm "$out/rootfs" | cut -f1) MB, initramfs $(($(stat -c %s "$out/initramfs.cpio.zst") / 1048576)) MB ($out)"
