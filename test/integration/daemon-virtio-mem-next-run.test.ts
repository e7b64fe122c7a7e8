// The next-run (persistent) definition of a virtio-mem VM, on a real guest:
// it follows VM.resizeMemoryDevice and VM.setMemory only while it is in step
// with the running VM (docs/design.md, "The feature": its <memory> equals the
// live one and each virtio-mem device asks for what the live one asks).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SetMemoryResult, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient as Client } from '../helpers/rpc-client.js';
import { virsh } from '../helpers/virsh.js';

const guests = useGuests();
let d: DaemonProcess;
let c: Client;
const MiB = 1024 * 1024;

beforeAll(async () => {
  await hostReady();
  d = await startDaemon({ domainPrefix: 'vmhostd-test-vmr-' });
  c = await Client.connect(d.url);
});
afterAll(async () => {
  await c?.close();
  await d?.stop();
});

/** The definition's <memory> and the device's <requested>, MiB. */
async function definition(name: string): Promise<{ memory: number; requested: number }> {
  const xml = await virsh('dumpxml', '--inactive', name);
  const mem = /<memory unit='KiB'>(\d+)<\/memory>/.exec(xml);
  const req = /<requested unit='KiB'>(\d+)<\/requested>/.exec(xml);
  if (!mem || !req) throw new Error('no <memory> or <requested> in the definition');
  return { memory: Number(mem[1]) / 1024, requested: Number(req[1]) / 1024 };
}

interface Resized {
  requested: number;
  current: number;
  nextRun: { updated: boolean; requested: number };
}

describe('virtio-mem and the next-run definition (real guest)', () => {
  it('in step: resize and setMemory carry the device size (and the DIMMs) into the definition; out of step: left alone', async () => {
    const g = await guests.start({
      kind: 'virtio-mem',
      memoryMiB: 256,
      maxMemoryMiB: 2048,
      namePrefix: 'vmr-next',
      persistent: true,
      virtioMem: [{ alias: 'ua-vmem0', sizeMiB: 1024, requestedMiB: 0 }],
    });
    // libvirt counts the device at its maximum in <memory>.
    expect(await definition(g.name)).toEqual({ memory: 256 + 1024, requested: 0 });

    const grown = await c.call<Resized>('VM.resizeMemoryDevice', {
      vmID: g.uuid,
      alias: 'ua-vmem0',
      requested: 512,
      timeout: 120,
    });
    expect(grown).toMatchObject({ current: 512, nextRun: { updated: true, requested: 512 } });
    expect(await definition(g.name)).toEqual({ memory: 1280, requested: 512 });

    // setMemory with virtio-mem alone: the device's requested follows; next boot = the VM now.
    const down = await c.call<SetMemoryResult>('VM.setMemory', {
      vmID: g.uuid,
      memory: 700 * MiB,
      timeout: 120,
    });
    expect(down).toMatchObject({ memSize: 700, nextRun: { updated: true, memory: 700 } });
    expect(await definition(g.name)).toEqual({ memory: 1280, requested: 444 });

    // A DIMM plugged while in step goes into <memory> as plain memory ...
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 128, node: 0, alias: 'ua-dimm1' } },
    });
    expect(plugged.memSize).toBe(828);
    expect(await definition(g.name)).toEqual({ memory: 1280 + 128, requested: 444 });
    // ... and a decrease with both kinds takes it out again (DIMM first, virtio-mem the rest).
    const both = await c.call<SetMemoryResult>('VM.setMemory', {
      vmID: g.uuid,
      memory: 600 * MiB,
      timeout: 120,
    });
    expect(both).toMatchObject({
      memSize: 600,
      unplugged: [{ alias: 'ua-dimm1', size: 128 }],
      resized: [{ alias: 'ua-vmem0', requested: 344, current: 344 }],
      nextRun: { updated: true, memory: 600 },
    });
    expect(await definition(g.name)).toEqual({ memory: 1280, requested: 344 });

    // Out of step (someone changed the definition's device): nothing is carried over.
    await virsh(
      'update-memory-device',
      g.name,
      '--alias',
      'ua-vmem0',
      '--requested-size',
      '64MiB',
      '--config',
    );
    const apart = await c.call<Resized>('VM.resizeMemoryDevice', {
      vmID: g.uuid,
      alias: 'ua-vmem0',
      requested: 300,
      timeout: 120,
    });
    expect(apart).toMatchObject({ current: 300, nextRun: { updated: false, requested: 64 } });
    expect(await definition(g.name)).toEqual({ memory: 1280, requested: 64 });
    const set = await c.call<SetMemoryResult>('VM.setMemory', {
      vmID: g.uuid,
      memory: 500 * MiB,
      timeout: 120,
    });
    expect(set).toMatchObject({ memSize: 500, nextRun: { updated: false, memory: 256 + 64 } });
    expect(await definition(g.name)).toEqual({ memory: 1280, requested: 64 });
  });
});
