import { describe, expect, it } from 'vitest';
import { devicesHash } from '../../src/virt/hash.js';
import type { VmStatsDevice } from '../../src/virt/types.js';
import { statsDimm } from '../helpers/sample-data.js';

const dev = (alias: string, state: VmStatsDevice['state'] = 'plugged'): VmStatsDevice =>
  statsDimm(alias, { state });

describe('devicesHash', () => {
  it('is stable for the same devices and changes with the set, a state or the size', () => {
    const h = devicesHash(1024, [dev('ua-a')]);
    expect(devicesHash(1024, [dev('ua-a')])).toBe(h);
    expect(devicesHash(1024, [dev('ua-a', 'unplugging')])).not.toBe(h);
    expect(devicesHash(1024, [dev('ua-a'), dev('ua-b')])).not.toBe(h);
    expect(devicesHash(1024, [])).not.toBe(h);
    expect(devicesHash(896, [dev('ua-a')])).not.toBe(h);
  });

  it('changes with a virtio-mem device’s requested or current size, and keeps DIMM-only hashes', () => {
    const vmem = (requested: number, current: number): VmStatsDevice => ({
      model: 'virtio-mem',
      alias: 'ua-v',
      size: 1024,
      node: 0,
      slot: -1,
      base: '',
      state: requested === current ? 'plugged' : 'resizing',
      requested,
      current,
      block: 2,
    });
    const h = devicesHash(640, [vmem(128, 128)]);
    expect(devicesHash(640, [vmem(256, 128)])).not.toBe(h);
    expect(devicesHash(640, [vmem(128, 130)])).not.toBe(h);
    // Known DIMM-only values (from the releases before): engines polling the hash see no change.
    expect(devicesHash(1024, [dev('ua-a')])).toBe('62d14074b67493a4');
    expect(devicesHash(1792, [dev('ua-a'), dev('ua-b', 'unplugging')])).toBe('f76854f98a813ff6');
  });
});
