#!/bin/sh
# /init of the vmhostd test guest (busybox, PID 1). Speaks the console protocol
# the test helpers parse (test/helpers/guest.ts):
#   VMHOST-GUEST READY memtotal_kib=<n> blocks=<online memory blocks>   (once)
#   VMHOST-GUEST MEMTOTAL kib=<n>                                        (every 0.5 s)
# The guest kind comes from the kernel command line (vmhost.kind=...). A
# rejecting guest additionally pins kernel memory in every memory block that
# appears after boot and reports it:
#   VMHOST-GUEST PINNED block=<memoryN> tries=<n> dirs=<n>
#   VMHOST-GUEST PIN-FAILED block=<memoryN>    (could not pin: the guest would release it)

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/ttyS0 2>&1

kind=cooperative
for arg in $(cat /proc/cmdline); do
  case $arg in vmhost.kind=*) kind=${arg#vmhost.kind=} ;; esac
done

# Builtins only in the hot loop: every fork is slow under TCG.
memtotal() {
  while read -r key val _; do
    [ "$key" = MemTotal: ] && { MEMTOTAL=$val; return; }
  done </proc/meminfo
}
memfree() {
  while read -r key val _; do
    [ "$key" = MemFree: ] && { MEMFREE=$val; return; }
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

# Rejecting guest: get unmovable kernel objects (dentries + inodes of empty
# directories on a ramfs) into the new block. Freshly onlined pages sit at the
# tail of the free lists, so first eat most free memory with movable page cache
# (a ramfs file), leaving mostly the new block free, then create directories,
# then give the filler back. Verify by offlining the block ourselves: if that
# succeeds the pin missed, so re-online it and try again with more directories.
pin_block() {
  blk=$1
  dir=/pins/$blk
  mkdir -p "$dir" /fill
  mount -t ramfs ramfs /fill
  tries=0
  dirs=0
  n=4000
  while [ $tries -lt 12 ]; do
    tries=$((tries + 1))
    memfree
    # Leave ~40 MiB free: enough headroom, less than one 128 MiB block.
    fill=$(((MEMFREE - 40960) / 1024))
    [ $fill -gt 0 ] && dd if=/dev/zero of=/fill/f bs=1048576 count=$fill 2>/dev/null
    mkdir -p "$dir/$tries"
    (cd "$dir/$tries" && mkdir $(seq 1 $n))
    dirs=$((dirs + n))
    rm -f /fill/f
    if ! echo offline >"/sys/devices/system/memory/$blk/state" 2>/dev/null; then
      umount /fill
      echo "VMHOST-GUEST PINNED block=$blk tries=$tries dirs=$dirs"
      return 0
    fi
    echo online_kernel >"/sys/devices/system/memory/$blk/state"
    n=$((n * 2 > 32000 ? 32000 : n * 2))
  done
  umount /fill
  echo "VMHOST-GUEST PIN-FAILED block=$blk"
  return 1
}

pinner() {
  for blk in $1; do
    [ -e "/pins/$blk.done" ] && continue
    pin_block "$blk"
    : >"/pins/$blk.done"
  done
  rm -f /pins/.busy
}

memtotal
online_blocks
BOOT_BLOCKS=" $ONLINE "
echo "VMHOST-GUEST READY memtotal_kib=$MEMTOTAL blocks=$BLOCKS kind=$kind"

mkdir -p /pins
while :; do
  memtotal
  echo "VMHOST-GUEST MEMTOTAL kib=$MEMTOTAL"
  if [ "$kind" = rejecting ]; then
    # One pinner at a time (it removes /pins/.busy when done); it skips blocks already handled.
    if [ ! -e /pins/.busy ]; then
      online_blocks
      new=
      for blk in $ONLINE; do
        case $BOOT_BLOCKS in *" $blk "*) ;; *) [ -e "/pins/$blk.done" ] || new="$new $blk" ;; esac
      done
      if [ -n "$new" ]; then
        : >/pins/.busy
        pinner "$new" &
      fi
    fi
  fi
  sleep 0.5
done
