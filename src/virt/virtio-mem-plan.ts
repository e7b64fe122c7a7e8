// "Set memory to X" with virtio-mem devices: the new requested size of each
// device so that the VM gets as close to X as blocks allow, never below X on
// the way down (the oVirt rule), at least X on the way up when the devices
// have room.
//
// With both kinds on a decrease, DIMMs go first (the planner's greedy picks,
// each <= the decrement) and virtio-mem then takes the remainder, measured
// on the live memory after the unplugs: DIMMs only come in whole sizes,
// virtio-mem in 2 MiB blocks, so virtio-mem last is what makes the result
// exact, and it also absorbs a DIMM the guest refused to give back.

import type { LiveVirtioMem } from './virtio-mem.js';

export interface VirtioMemTarget {
  alias: string;
  /** New requested size, MiB. */
  requested: number;
}

const floorTo = (n: number, step: number) => Math.floor(n / step) * step;
const ceilTo = (n: number, step: number) => Math.ceil(n / step) * step;

/**
 * The resizes that move `memoryMiB` toward `targetMiB`: largest devices
 * first on the way down, first with room on the way up. Empty when no
 * device can move (or nothing is to do).
 */
export function planVirtioMem(
  memoryMiB: number,
  targetMiB: number,
  devices: readonly LiveVirtioMem[],
): VirtioMemTarget[] {
  const out: VirtioMemTarget[] = [];
  if (targetMiB < memoryMiB) {
    let left = memoryMiB - targetMiB;
    for (const d of [...devices].sort((a, b) => b.current - a.current)) {
      const take = Math.min(floorTo(left, d.block), floorTo(d.current, d.block));
      if (take <= 0) continue;
      out.push({ alias: d.alias, requested: d.current - take });
      left -= take;
    }
  } else if (targetMiB > memoryMiB) {
    let left = targetMiB - memoryMiB;
    for (const d of devices) {
      if (left <= 0) break;
      const room = floorTo(d.size - d.current, d.block);
      const give = Math.min(ceilTo(left, d.block), room);
      if (give <= 0) continue;
      out.push({ alias: d.alias, requested: d.current + give });
      left -= give;
    }
  }
  return out;
}
