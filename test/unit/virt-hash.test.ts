import { describe, expect, it } from 'vitest';
import { devicesHash } from '../../src/virt/hash.js';
import type { VmStatsDevice } from '../../src/virt/types.js';

const dev = (alias: string, state: VmStatsDevice['state'] = 'plugged'): VmStatsDevice => ({
  alias,
  size: 128,
  node: 0,
  slot: 1,
  base: '0x100000000',
  state,
});

describe('devicesHash', () => {
  it('is stable for the same devices and changes with the set, a state or the size', () => {
    const h = devicesHash(1024, [dev('ua-a')]);
    expect(devicesHash(1024, [dev('ua-a')])).toBe(h);
    expect(devicesHash(1024, [dev('ua-a', 'unplugging')])).not.toBe(h);
    expect(devicesHash(1024, [dev('ua-a'), dev('ua-b')])).not.toBe(h);
    expect(devicesHash(1024, [])).not.toBe(h);
    expect(devicesHash(896, [dev('ua-a')])).not.toBe(h);
  });
});
