#!/usr/bin/env bash
# Builds the test guest: the Debian cloud kernel (ACPI memory hotplug and hot
# remove built in) and a busybox initramfs whose /init is test/host/guest-init.sh.
# One initramfs serves every guest kind; the kind is on the kernel command line
# (see test/host/domain-xml.ts). Output, cached, in .cache/guest/:
#   vmlinuz            the kernel
#   modules/*.ko       the virtio modules virtio-mem needs (from the same package)
#   initramfs.cpio.gz  busybox + /init + the modules
#   kernel-version     the Debian package the kernel came from
# A second run only hashes the inputs. VMHOST_GUEST_REFRESH=1 forces a rebuild
# (and re-resolves the kernel package).
set -euo pipefail

log() { printf '[build-guest] %s\n' "$*"; }
die() { printf '[build-guest] ERROR: %s\n' "$*" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${VMHOST_GUEST_DIR:-$repo/.cache/guest}
busybox=/bin/busybox
mkdir -p "$out"

for tool in apt-get apt-cache dpkg-deb cpio gzip sha256sum; do
  command -v "$tool" >/dev/null || die "$tool not found (run test/host/setup-host.sh first)"
done
[[ -x $busybox ]] || die "$busybox missing: install busybox-static (test/host/setup-host.sh)"
file_type=$(od -An -c -N4 "$busybox" | tr -d ' ')
[[ $file_type == 177ELF ]] || die "$busybox is not an ELF binary"

# virtio-mem as modules, in load order (guest-init.sh loads them for the virtio-mem kinds).
virtio_modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mem)
modules_present() {
  local m
  for m in "${virtio_modules[@]}"; do [[ -s $out/modules/$m.ko ]] || return 1; done
}

if [[ ${VMHOST_GUEST_REFRESH:-} == 1 ]]; then
  rm -rf "$out/vmlinuz" "$out/modules" "$out/initramfs.cpio.gz" "$out/initramfs.key" "$out/kernel-version"
fi

# Kernel: linux-image-cloud-amd64 is a metapackage; download the versioned
# package it depends on and take /boot/vmlinuz-* and the virtio modules out of it.
if [[ ! -s $out/vmlinuz ]] || ! modules_present; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
  if [[ -z $pkg ]]; then
    log "linux-image-cloud-amd64 unknown to apt; running apt-get update"
    apt-get update -q
    pkg=$(apt-cache depends linux-image-cloud-amd64 |
      sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
  fi
  [[ -n $pkg ]] || die "cannot resolve the package behind linux-image-cloud-amd64"
  log "downloading $pkg"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # apt-get download writes into the current directory; as root it warns that
  # _apt cannot write there, harmlessly.
  (cd "$tmp" && apt-get download -q "$pkg" 2>&1 | grep -v 'unsandboxed' || true)
  deb=$(ls "$tmp"/*.deb 2>/dev/null | head -n1 || true)
  [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*.ko'
  vmlinuz=$(ls "$tmp"/boot/vmlinuz-* | head -n1)
  [[ -s $vmlinuz ]] || die "no vmlinuz in $deb"
  rm -rf "$out/modules" && mkdir -p "$out/modules"
  for m in "${virtio_modules[@]}"; do
    ko=$(ls "$tmp"/lib/modules/*/kernel/drivers/virtio/"$m".ko 2>/dev/null | head -n1 || true)
    [[ -s $ko ]] || die "no $m.ko in $deb"
    cp "$ko" "$out/modules/"
  done
  mv "$vmlinuz" "$out/vmlinuz.new"
  mv "$out/vmlinuz.new" "$out/vmlinuz"
  echo "$pkg" >"$out/kernel-version"
  rm -rf "$tmp"
  trap - EXIT
  log "kernel: $out/vmlinuz ($(cat "$out/kernel-version"))"
else
  log "kernel cached ($(cat "$out/kernel-version" 2>/dev/null || echo unknown))"
fi

# Initramfs: rebuilt when /init, this script or busybox change.
key=$(cat "$here/guest-init.sh" "$here/build-guest.sh" "$busybox" | sha256sum | cut -d' ' -f1)
if [[ -s $out/initramfs.cpio.gz && $(cat "$out/initramfs.key" 2>/dev/null) == "$key" ]]; then
  log "initramfs cached"
  exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
modules_present || die "virtio modules missing in $out/modules (VMHOST_GUEST_REFRESH=1 re-downloads them)"
for m in "${virtio_modules[@]}"; do cp "$out/modules/$m.ko" "$root/lib/modules/"; done
# Symlinks for every applet, made now so /init needs no --install at boot.
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$here/guest-init.sh" "$root/init"
# The kernel needs /dev/console before devtmpfs is mounted to give /init a console.
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >"$out/initramfs.cpio.gz.new"
mv "$out/initramfs.cpio.gz.new" "$out/initramfs.cpio.gz"
echo "$key" >"$out/initramfs.key"
log "initramfs: $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") bytes)"
