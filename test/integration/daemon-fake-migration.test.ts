// VDSM's `_not_migrating` guard, through the whole daemon on the fake
// libvirtd (a real host cannot start an outgoing migration on demand here):
// while job stats say an outgoing migration runs, hot plug, hot unplug and
// set-memory fail with code 51 and never reach attach/detach; other jobs do
// not block; when the job ends the same calls succeed.
import { describe, expect, it } from 'vitest';
import { JobOperation } from '../../src/libvirt/types.js';
import type { Stats } from '../helpers/api-types.js';
import { fakeDaemonPerTest } from '../helpers/fake-daemon-fixture.js';
import { expectRpcError } from '../helpers/rpc-client.js';

const t = fakeDaemonPerTest();

describe('memory operations during an outgoing migration', () => {
  it('are refused with code 51 while the job runs, and work again after it', async () => {
    const { fake } = t;
    const vmId = fake.addDomain({ memoryMiB: 1024 }).uuid;
    const { c } = await t.start({ unplugTimeoutS: 5 });
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: vmId,
      params: { vmId, memory: { size: 128, node: 0 } },
    });
    const dimm = plugged.memoryDevices[0];
    if (!dimm) throw new Error('no DIMM plugged');
    const attaches = fake.callCount('DOMAIN_ATTACH_DEVICE_FLAGS');
    const detaches = fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS');

    fake.setJob(vmId, JobOperation.MIGRATION_OUT);
    const calls: [string, unknown][] = [
      ['VM.hotplugMemory', { vmID: vmId, params: { vmId, memory: { size: 128, node: 0 } } }],
      [
        'VM.hotunplugMemory',
        { vmID: vmId, params: { vmId, memory: { size: 128, node: 0, alias: dimm.alias } } },
      ],
      ['VM.setMemory', { vmID: vmId, memory: 1024 * 1024 * 1024 }],
    ];
    for (const [method, params] of calls) {
      const e = await expectRpcError(c.call(method, params));
      expect(e.code, method).toBe(51);
      expect(e.message).toMatch(/migrat/i);
    }
    expect(fake.callCount('DOMAIN_ATTACH_DEVICE_FLAGS')).toBe(attaches);
    expect(fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS')).toBe(detaches);
    expect(fake.callCount('DOMAIN_GET_JOB_STATS')).toBeGreaterThanOrEqual(3);
    const still = await c.call<Stats>('VM.getStats', { vmID: vmId });
    expect(JSON.stringify(still)).toContain(dimm.alias);

    // A job that is not an outgoing migration (a memory dump) does not block.
    fake.setJob(vmId, JobOperation.DUMP);
    const more = await c.call<Stats>('VM.hotplugMemory', {
      vmID: vmId,
      params: { vmId, memory: { size: 128, node: 0 } },
    });
    expect(more.memoryDevices).toHaveLength(2);

    fake.setJob(vmId, null);
    const removed = await c.call<{ status: string }>('VM.hotunplugMemory', calls[1]?.[1]);
    expect(removed.status).toBe('removed');
  });
});
