// An unplug whose DIMM the guest released while every read of the VM fails
// (libvirt connection trouble right after the detach): libvirt's
// device-removed event is the removal (libvirt sends it once the DIMM left
// the live definition), so the call answers `removed` with no re-read, the
// record and metadata drop the DIMM, and once libvirt answers again a resync
// agrees without reporting the removal a second time.

import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LibvirtConnectionError } from '../../src/libvirt/errors.js';
import { LibvirtClient } from '../../src/libvirt/index.js';
import type { LibvirtApi } from '../../src/libvirt/types.js';
import type { DeviceRemovedEvent } from '../../src/virt/types.js';
import { VmManager } from '../../src/virt/vm-manager.js';
import { FakeLibvirtd } from '../fakes/fake-libvirtd.js';
import { waitFor } from '../helpers/wait.js';

let fake: FakeLibvirtd;
const open: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});

afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c.close();
  await fake.stop();
});

describe('hot unplug: the guest released the DIMM while reads of the VM fail', () => {
  it('answers removed from the event alone; a later resync agrees and reports nothing twice', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, unplug: 'release', eventBeforeReply: true, eventDelayMs: 0 });
    const client = await LibvirtClient.connect({ socketPath: fake.socketPath, reconnect: false });
    open.push(client);
    // getXMLDesc fails while `failXml` is set, as during a libvirt connection hiccup.
    let failXml = false;
    let failedReads = 0;
    const api = new Proxy(client, {
      get(target, prop) {
        if (prop === 'getXMLDesc') {
          return (...a: Parameters<LibvirtClient['getXMLDesc']>) => {
            if (!failXml) return target.getXMLDesc(...a);
            failedReads++;
            return Promise.reject(new LibvirtConnectionError('injected: connection trouble'));
          };
        }
        if (prop === 'detachDeviceFlags') {
          return (...a: Parameters<LibvirtClient['detachDeviceFlags']>) => {
            failXml = true;
            return target.detachDeviceFlags(...a);
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as LibvirtApi;
    const vms = await VmManager.start(api, {
      log: pino({ level: process.env.VMHOST_TEST_LOG ?? 'silent' }),
      unplugTimeoutMs: 5_000,
      dimmAlignmentMiB: 128,
    });
    open.push(vms);
    await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-a' });
    const removals: DeviceRemovedEvent[] = [];
    vms.on('deviceRemoved', (_vmId, ev) => removals.push(ev));

    const sent = fake.recordXml();
    const r = await vms.hotunplugMemory(d.uuid, { alias: 'ua-a', size: 128, node: 0 });
    expect(r.memSize).toBe(1024);
    expect(failedReads).toBe(0);
    expect(removals).toEqual([{ alias: 'ua-a', memSize: 1024, late: false }]);
    expect(vms.stats(d.uuid).memoryDevices).toEqual([]);
    expect(fake.getDomainState(d.uuid)?.liveDimms).toEqual([]);
    // The metadata written after the removal lists no mark and no ua-a.
    const md = await waitFor('the metadata write after the removal', () =>
      sent.find((x) => x.proc === 'DOMAIN_SET_METADATA'),
    );
    expect(md.xml).not.toContain('ua-a');

    // libvirt is reachable again; the resync after a reconnect finds the same.
    // (A hot plug after it reads the VM behind the resync's read.)
    failXml = false;
    client.emit('reconnected');
    const s = await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-b' });
    expect(s.memoryDevices.map((x) => x.alias)).toEqual(['ua-b']);
    expect(vms.stats(d.uuid).memSize).toBe(1152);
    expect(removals).toHaveLength(1);
  });
});
