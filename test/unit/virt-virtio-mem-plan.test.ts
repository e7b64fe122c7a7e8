import { describe, expect, it } from 'vitest';
import type { LiveVirtioMem } from '../../src/virt/virtio-mem.js';
import { planVirtioMem } from '../../src/virt/virtio-mem-plan.js';

const dev = (alias: string, current: number, size = 1024, block = 2): LiveVirtioMem => ({
  alias,
  node: 0,
  sizeKiB: size * 1024,
  blockKiB: block * 1024,
  requestedKiB: current * 1024,
  currentKiB: current * 1024,
  size,
  block,
  requested: current,
  current,
  address: { type: 'pci', slot: '0x02' },
});

describe('planVirtioMem', () => {
  it('shrinks to an exact non-128-multiple target', () => {
    // 256 base + 512 virtio-mem = 768; to 650 -> the device gives 118 MiB.
    expect(planVirtioMem(768, 650, [dev('ua-v', 512)])).toEqual([{ alias: 'ua-v', requested: 394 }]);
  });

  it('never goes below the target: an odd remainder is rounded to the block, up', () => {
    expect(planVirtioMem(768, 651, [dev('ua-v', 512)])).toEqual([{ alias: 'ua-v', requested: 396 }]);
    expect(planVirtioMem(768, 651, [dev('ua-v', 512, 1024, 4)])).toEqual([{ alias: 'ua-v', requested: 396 }]);
  });

  it('takes from the largest device first and stops at what the devices have', () => {
    expect(planVirtioMem(1000, 600, [dev('ua-a', 100), dev('ua-b', 300)])).toEqual([
      { alias: 'ua-b', requested: 0 },
      { alias: 'ua-a', requested: 0 },
    ]);
    expect(planVirtioMem(1000, 800, [dev('ua-a', 100), dev('ua-b', 300)])).toEqual([
      { alias: 'ua-b', requested: 100 },
    ]);
  });

  it('grows to at least the target when there is room, capped by the maximum', () => {
    expect(planVirtioMem(384, 651, [dev('ua-v', 128)])).toEqual([{ alias: 'ua-v', requested: 396 }]);
    expect(planVirtioMem(384, 5000, [dev('ua-v', 128)])).toEqual([{ alias: 'ua-v', requested: 1024 }]);
    expect(planVirtioMem(384, 384, [dev('ua-v', 128)])).toEqual([]);
    expect(planVirtioMem(384, 383, [dev('ua-v', 0)])).toEqual([]);
  });
});
