// Waiting for a virtio-mem device to reach its requested size. The guest's
// driver moves `current` in blocks and QEMU reports each move (libvirt's
// memory-device size-change event, rate-limited by QEMU to about one a
// second per device). The wait ends when current == requested, at the
// deadline, when `current` has not moved for the stall period (a shrink
// the guest cannot finish: unmovable pages), or when the VM stops.
//
// Events are the clock of progress, but never the only source of truth: a
// re-read of the live XML decides at every end (an event may be late, or
// lost with a connection), so the `current` we report is libvirt's.

import type { LibvirtApi, LifecycleEventInfo, MemoryDeviceSizeChangeInfo } from '../libvirt/types.js';
import { LifecycleEvent } from '../libvirt/types.js';

export type WaitEnd = 'reached' | 'timeout' | 'stalled' | 'vm-gone';

export interface SizeWaitOptions {
  uuid: string;
  alias: string;
  targetKiB: number;
  /** current when the wait starts (the live XML before the request). */
  startKiB: number;
  timeoutMs: number;
  stallMs: number;
  /** Each reported size, in order (progress). */
  onSize?: (currentKiB: number) => void;
}

/**
 * Subscribes at once (call it before the update, so no event is missed);
 * `result` settles with how the wait ended and the last size seen in events.
 * `cancel` drops the subscription and timers.
 */
export function watchSize(
  client: LibvirtApi,
  o: SizeWaitOptions,
): { result: Promise<{ end: WaitEnd; lastKiB: number }>; cancel(): void; poke(currentKiB: number): void } {
  let lastKiB = o.startKiB;
  let settle: (v: { end: WaitEnd; lastKiB: number }) => void = () => undefined;
  const result = new Promise<{ end: WaitEnd; lastKiB: number }>((r) => {
    settle = r;
  });
  let deadline: NodeJS.Timeout | undefined;
  let stall: NodeJS.Timeout | undefined;
  let done = false;

  const finish = (end: WaitEnd): void => {
    if (done) return;
    done = true;
    cleanup();
    settle({ end, lastKiB });
  };
  const armStall = (): void => {
    if (stall) clearTimeout(stall);
    stall = setTimeout(() => finish('stalled'), o.stallMs);
  };
  const seen = (kib: number): void => {
    if (done) return;
    const moved = kib !== lastKiB;
    lastKiB = kib;
    o.onSize?.(kib);
    if (kib === o.targetKiB) finish('reached');
    else if (moved) armStall();
  };
  const onSize = (ev: MemoryDeviceSizeChangeInfo): void => {
    if (ev.domain.uuid.toLowerCase() === o.uuid && ev.alias === o.alias) seen(ev.sizeKiB);
  };
  const onLifecycle = (ev: LifecycleEventInfo): void => {
    if (ev.domain.uuid.toLowerCase() === o.uuid && ev.event === LifecycleEvent.STOPPED) finish('vm-gone');
  };
  const cleanup = (): void => {
    if (deadline) clearTimeout(deadline);
    if (stall) clearTimeout(stall);
    client.off('memoryDeviceSizeChange', onSize);
    client.off('lifecycle', onLifecycle);
  };

  client.on('memoryDeviceSizeChange', onSize);
  client.on('lifecycle', onLifecycle);
  deadline = setTimeout(() => finish('timeout'), o.timeoutMs);
  armStall();
  return {
    result,
    cancel: () => {
      if (done) return;
      done = true;
      cleanup();
    },
    /** A size learnt another way (a re-read of the live XML). */
    poke: seen,
  };
}
