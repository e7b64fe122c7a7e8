// The libvirt client's virtio-mem subset: virDomainUpdateDeviceFlags and the
// memory-device size-change event, against the real libvirtd and a real
// virtio-mem guest (the fake only for an older libvirtd without the event).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DomainAffect,
  defaultSocketPath,
  LibvirtClient,
  LibvirtError,
  type MemoryDeviceSizeChangeInfo,
} from '../../src/libvirt/index.js';
import { DomainEventId } from '../../src/libvirt/protocol.js';
import { FakeLibvirtd } from '../fakes/fake-libvirtd.js';
import { hostReady, useGuests } from '../helpers/guest.js';

const guests = useGuests();

const resizeXml = (requestedKiB: number, address: string) =>
  `<memory model='virtio-mem'><target><size unit='KiB'>1048576</size><node>0</node><block unit='KiB'>2048</block>` +
  `<requested unit='KiB'>${requestedKiB}</requested></target><alias name='ua-vmem0'/>${address}</memory>`;

describe('virtio-mem through the libvirt client, real libvirtd', () => {
  let client: LibvirtClient;
  beforeAll(async () => {
    await hostReady();
    client = await LibvirtClient.connect({ socketPath: defaultSocketPath() });
  });
  afterAll(async () => {
    await client?.close();
  });

  it('refuses a size off the block grid, then grows a device; size-change events report KiB and end at the request', async () => {
    expect(client.memoryDeviceEvents).toBe(true);
    const g = await guests.start({
      kind: 'virtio-mem',
      memoryMiB: 256,
      maxMemoryMiB: 2048,
      namePrefix: 'lv-vmem',
      virtioMem: [{ alias: 'ua-vmem0', sizeMiB: 1024, requestedMiB: 0 }],
    });
    const dom = await client.lookupByUUID(g.uuid);
    const live = await client.getXMLDesc(dom);
    const address = /<memory model='virtio-mem'>[\s\S]*?(<address type='pci'[^>]*\/>)/.exec(live)?.[1];
    expect(address).toBeDefined();

    const err = await client
      .updateDeviceFlags(dom, resizeXml(3 * 1024, address ?? ''), DomainAffect.LIVE)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).message).toMatch(/multiple of block size/);
    expect(await client.getXMLDesc(dom)).toContain("<requested unit='KiB'>0</requested>");

    const sizes: MemoryDeviceSizeChangeInfo[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no size-change event reached 256 MiB: ${JSON.stringify(sizes)}`)),
        60_000,
      );
      client.on('memoryDeviceSizeChange', (ev) => {
        if (ev.domain.uuid !== g.uuid) return;
        sizes.push(ev);
        if (ev.sizeKiB === 256 * 1024) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await client.updateDeviceFlags(dom, resizeXml(256 * 1024, address ?? ''), DomainAffect.LIVE);
    await done;
    expect(sizes.every((e) => e.alias === 'ua-vmem0' && e.domain.name === g.name)).toBe(true);
    // Non-decreasing on the way up, in KiB (a byte count would be 1024x larger).
    for (let i = 1; i < sizes.length; i++)
      expect(sizes[i]!.sizeKiB).toBeGreaterThanOrEqual(sizes[i - 1]!.sizeKiB);
    expect(await client.getXMLDesc(dom)).toContain(`<current unit='KiB'>${256 * 1024}</current>`);
    await g.waitForMemTotal((kib) => kib > 200 * 1024 + 150 * 1024);
  });
});

describe('virtio-mem through the libvirt client, fake libvirtd', () => {
  it('connects to a libvirtd that does not know the size-change event, and says so', async () => {
    const fake = await FakeLibvirtd.start();
    fake.refuseEventId(DomainEventId.MEMORY_DEVICE_SIZE_CHANGE);
    const client = await LibvirtClient.connect({ socketPath: fake.socketPath, reconnect: false });
    try {
      expect(client.connected).toBe(true);
      expect(client.memoryDeviceEvents).toBe(false);
      expect(await client.getHostname()).toBe('fake-host');
    } finally {
      await client.close();
      await fake.stop();
    }
  });

  it('delivers the fake guest driver’s size-change events in order', async () => {
    const fake = await FakeLibvirtd.start();
    const client = await LibvirtClient.connect({ socketPath: fake.socketPath, reconnect: false });
    try {
      const ref = fake.addDomain({
        memoryMiB: 512,
        virtioMem: [{ alias: 'ua-vm0', sizeMiB: 1024 }],
        virtioMemBehaviour: { mode: 'follow', stepMiB: 100, stepMs: 5 },
      });
      const seen: number[] = [];
      const done = new Promise<void>((resolve) =>
        client.on('memoryDeviceSizeChange', (ev) => {
          seen.push(ev.sizeKiB / 1024);
          if (ev.sizeKiB === 300 * 1024) resolve();
        }),
      );
      await client.updateDeviceFlags(
        ref,
        "<memory model='virtio-mem'><target><requested unit='MiB'>300</requested></target><alias name='ua-vm0'/></memory>",
        DomainAffect.LIVE,
      );
      await done;
      expect(seen).toEqual([100, 200, 300]);
      expect(fake.getVirtioMem(ref.uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 300, currentMiB: 300 }]);
    } finally {
      await client.close();
      await fake.stop();
    }
  });
});
