#!/bin/sh
# /init of the vmhostd test guest (busybox, PID 1). Speaks the console protocol
# the test helpers parse (test/helpers/guest.ts):
#   VMHOST-GUEST READY memtotal_kib=<n> blocks=<online memory blocks>   (once)
#   VMHOST-GUEST MEMTOTAL kib=<n>                                        (every 0.5 s)
# The guest kind comes from the kernel command line (vmhost.kind=...). A
# rejecting guest additionally pins kernel memory in every DIMM that appears
# after boot and reports it (one line per DIMM; for virtio-mem-rejecting, one
# per 128 MiB memory block the virtio-mem device plugs):
#   VMHOST-GUEST PINNED block=<memoryN> dimm=<ACPI device> tries=<n> dirs=<n> ms=<n>
#   VMHOST-GUEST PIN-FAILED dimm=<ACPI device> blocks=<..>   (could not pin: it would release it)

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/ttyS0 2>&1

kind=cooperative
debug=
for arg in $(cat /proc/cmdline); do
  case $arg in
  vmhost.kind=*) kind=${arg#vmhost.kind=} ;;
  vmhost.debug) debug=1 ;;
  esac
done
dbg() { [ -n "$debug" ] && echo "VMHOST-GUEST DEBUG $*"; }

# Builtins only in the hot loop: every fork is slow under TCG.
memtotal() {
  while read -r key val _; do
    [ "$key" = MemTotal: ] && { MEMTOTAL=$val; return; }
  done </proc/meminfo
}
online_blocks() {
  BLOCKS=0
  ONLINE=
  for f in /sys/devices/system/memory/memory*/state; do
    read -r s <"$f" || continue
    [ "$s" = online ] || continue
    BLOCKS=$((BLOCKS + 1))
    b=${f%/state}
    ONLINE="$ONLINE ${b##*/}"
  done
}

# Free and high-watermark KiB of ZONE_NORMAL. Below 4 GiB guest-physical all
# base memory is DMA32, so (for base memory up to ~3 GiB) ZONE_NORMAL holds
# only hot-plugged blocks onlined as kernel memory. Kernel and page-cache
# allocations try ZONE_NORMAL first.
normal_zone() {
  NORMAL_FREE=0
  NORMAL_HIGH=0
  inzone=
  while read -r a b c d _; do
    if [ "$a" = Node ]; then
      inzone=
      [ "$c" = zone ] && [ "$d" = Normal ] && inzone=1
      continue
    fi
    [ -n "$inzone" ] || continue
    [ "$a $b" = "pages free" ] && NORMAL_FREE=$((c * 4))
    [ "$a" = high ] && NORMAL_HIGH=$((b * 4))
  done </proc/zoneinfo
}

uptime_cs() {
  read -r up _ </proc/uptime
  UPTIME_CS=${up%.*}${up#*.}
}

# Rejecting guest: get unmovable kernel objects (dentries + inodes of empty
# directories on a ramfs) into one block of the new DIMM; one unmovable page
# in any block makes the guest refuse the whole DIMM. Freshly onlined pages sit
# at the tail of the free lists, so first eat ZONE_NORMAL's free memory with an
# unreclaimable ramfs file, leaving ~32 MiB (less than a 128 MiB block) free in
# the newest block, then create directories, then give the filler back. Verify
# by offlining the blocks ourselves: if one refuses, the DIMM is pinned; if all
# succeed the pin missed, so re-online them and try again with more directories.
pin_dimm() { # group-name t0 blocks...
  group=$1
  t0=$2
  shift 2
  dir=/pins/$group
  mkdir -p "$dir" /fill
  mount -t ramfs ramfs /fill
  tries=0
  dirs=0
  n=4000
  while [ $tries -lt 10 ]; do
    tries=$((tries + 1))
    normal_zone
    fill=$(((NORMAL_FREE - NORMAL_HIGH - 32768) / 1024))
    dbg "group=$group try=$tries normal_free=$NORMAL_FREE high=$NORMAL_HIGH fill_mib=$fill"
    [ $fill -gt 0 ] && dd if=/dev/zero of=/fill/f bs=1048576 count=$fill 2>/dev/null
    mkdir -p "$dir/$tries"
    (cd "$dir/$tries" && mkdir $(seq 1 $n))
    dirs=$((dirs + n))
    normal_zone
    dbg "dirs=$dirs normal_free=$NORMAL_FREE"
    rm -f /fill/f
    pinned=
    for blk in "$@"; do
      if ! echo offline >"/sys/devices/system/memory/$blk/state" 2>/dev/null; then
        pinned=$blk
        break
      fi
    done
    for blk in "$@"; do
      read -r st <"/sys/devices/system/memory/$blk/state"
      [ "$st" = offline ] && echo online_kernel >"/sys/devices/system/memory/$blk/state"
    done
    if [ -n "$pinned" ]; then
      umount /fill
      uptime_cs
      echo "VMHOST-GUEST PINNED block=$pinned dimm=$group tries=$tries dirs=$dirs ms=$(((UPTIME_CS - t0) * 10))"
      return 0
    fi
    n=$((n * 2 > 32000 ? 32000 : n * 2))
  done
  umount /fill
  echo "VMHOST-GUEST PIN-FAILED dimm=$group blocks=$*"
  return 1
}

# The ACPI memory device (one per DIMM) a block belongs to; the block itself if
# unknown (virtio-mem blocks have no ACPI device).
dimm_of() {
  DIMM=$(readlink "/sys/devices/system/memory/$1/firmware_node" 2>/dev/null)
  DIMM=${DIMM##*/}
  [ -n "$DIMM" ] || DIMM=$1
}

# Rejecting guest: a watcher polling for new blocks every 0.1 s (the unplug
# must not win the race against the pin), pinning one DIMM at a time.
pin_watcher() {
  while :; do
    online_blocks
    rm -f /pins/*.members
    for blk in $ONLINE; do
      case $BOOT_BLOCKS in *" $blk "*) continue ;; esac
      dimm_of "$blk"
      [ -e "/pins/$DIMM.done" ] || echo "$blk" >>"/pins/$DIMM.members"
    done
    for m in /pins/*.members; do
      [ -e "$m" ] || continue
      g=${m##*/}
      g=${g%.members}
      members=$(cat "$m")
      uptime_cs
      pin_dimm "$g" "$UPTIME_CS" $members
      echo $members >"/pins/$g.done"
    done
    # A DIMM that went away after all gets pinned again if it comes back.
    for done in /pins/*.done; do
      [ -e "$done" ] || continue
      read -r members <"$done" || members=
      for blk in $members; do
        case " $ONLINE " in *" $blk "*) ;; *) rm -f "$done" ;; esac
      done
    done
    sleep 0.1
  done
}

# virtio-mem guests: the Debian cloud kernel has virtio and virtio-mem as
# modules; load them in dependency order (the initramfs has no modprobe data).
case $kind in
virtio-mem*)
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mem; do
    insmod "/lib/modules/$m.ko" || echo "VMHOST-GUEST INSMOD-FAILED module=$m"
  done
  ;;
esac

memtotal
online_blocks
BOOT_BLOCKS=" $ONLINE "
echo "VMHOST-GUEST READY memtotal_kib=$MEMTOTAL blocks=$BLOCKS kind=$kind"

mkdir -p /pins
case $kind in rejecting | virtio-mem-rejecting) pin_watcher & ;; esac

while :; do
  memtotal
  echo "VMHOST-GUEST MEMTOTAL kib=$MEMTOTAL"
  sleep 0.5
done
