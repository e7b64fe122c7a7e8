// virtio-mem through the daemon on a real virtio-mem guest (the Debian cloud
// kernel's virtio_mem driver, blocks onlined movable).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient as Client, type TestRpcClient } from '../helpers/rpc-client.js';
import { virsh } from '../helpers/virsh.js';

const guests = useGuests();
let d: DaemonProcess;
let c: TestRpcClient;

beforeAll(async () => {
  await hostReady();
  d = await startDaemon({ domainPrefix: 'vmhostd-test-vm-' });
  c = await Client.connect(d.url);
});
afterAll(async () => {
  await c?.close();
  await d?.stop();
});

describe('virtio-mem in VmStats (real guest)', () => {
  it('counts the device at its current size, not its maximum, and follows a resize made outside the daemon', async () => {
    const g = await guests.start({
      kind: 'virtio-mem',
      memoryMiB: 256,
      maxMemoryMiB: 2048,
      namePrefix: 'vm-stats',
      virtioMem: [{ alias: 'ua-vmem0', sizeMiB: 1024, requestedMiB: 0 }],
    });
    const memTotal0 = await g.memTotalKiB();
    const s0 = await c.call<Stats>('VM.getStats', { vmID: g.uuid });
    // libvirt's <memory> says 1280 (256 + the 1 GiB maximum); the guest has 256.
    expect(s0.memSize).toBe(256);
    expect(s0.memoryDevices).toEqual([
      {
        model: 'virtio-mem',
        alias: 'ua-vmem0',
        size: 1024,
        node: 0,
        slot: -1,
        base: '',
        state: 'plugged',
        requested: 0,
        current: 0,
        block: 2,
        address: expect.stringMatching(/^0000:00:[0-9a-f]{2}\.0$/),
      },
    ]);

    // An operator resizes with virsh: the size-change events bring the stats along.
    await virsh(
      'update-memory-device',
      g.name,
      '--alias',
      'ua-vmem0',
      '--requested-size',
      '130MiB',
      '--live',
    );
    const n = await c.waitForNotification((x) => {
      if (x.method !== `|virt|VM_status|${g.uuid}`) return false;
      const st = x.params as Stats;
      return st.memSize === 256 + 130;
    }, 60_000);
    const s1 = n.params as Stats;
    expect(s1.memoryDevices[0]).toMatchObject({ requested: 130, current: 130, state: 'plugged' });
    expect(s1.hash).not.toBe(s0.hash);
    // The guest really has the 130 MiB: its MemTotal grew by exactly that.
    await g.waitForMemTotal((kib) => kib === memTotal0 + 130 * 1024, 60_000);
  });
});
