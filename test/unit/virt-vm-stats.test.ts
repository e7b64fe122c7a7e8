// When a VM's stats are news for clients (VM_status): statsChanged compares
// the hash (devices, states, size) and, outside the hash, the guest's view of
// each DIMM, the status, guaranteed memory, name and balloon.
import { describe, expect, it } from 'vitest';
import type { VmStats, VmStatsDevice } from '../../src/virt/types.js';
import { statsChanged } from '../../src/virt/vm-stats.js';
import { statsDimm } from '../helpers/sample-data.js';

const dimm = (
  alias: string,
  zone: 'movable' | 'normal' | 'unknown' = 'movable',
  online = true,
): VmStatsDevice => statsDimm(alias, { guest: { online, zone } });

const stats = (devices: VmStatsDevice[], over: Partial<VmStats> = {}): VmStats => ({
  vmId: 'v',
  vmName: 'vm',
  status: 'Up',
  memSize: 1152,
  memGuaranteedSize: 1024,
  hash: 'h',
  balloonActive: false,
  memoryDevices: devices,
  ...over,
});

describe('statsChanged', () => {
  it('is false for equal stats built anew, true with no previous stats', () => {
    expect(statsChanged(stats([dimm('a'), dimm('b')]), stats([dimm('a'), dimm('b')]))).toBe(false);
    expect(statsChanged(undefined, stats([]))).toBe(true);
  });

  it("is true when any compared field or a DIMM's guest view changes", () => {
    const base = stats([dimm('a'), dimm('b')]);
    const changed: VmStats[] = [
      stats([dimm('a'), dimm('b')], { hash: 'h2' }),
      stats([dimm('a'), dimm('b')], { status: 'Down' }),
      stats([dimm('a'), dimm('b')], { memGuaranteedSize: 900 }),
      stats([dimm('a'), dimm('b')], { vmName: 'renamed' }),
      stats([dimm('a'), dimm('b')], { balloonActive: true }),
      stats([dimm('a'), dimm('b', 'normal')]),
      stats([dimm('a', 'movable', false), dimm('b')]),
      stats([dimm('a'), { ...dimm('b'), guest: undefined }]),
      stats([dimm('a')]),
      stats([dimm('a'), dimm('c')]),
    ];
    for (const next of changed) expect(statsChanged(base, next), JSON.stringify(next)).toBe(true);
  });
});
