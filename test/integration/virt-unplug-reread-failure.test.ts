// An unplug whose DIMM the guest released, but whose re-read of the VM fails
// (libvirt connection trouble right after the device-removed event): the
// call fails, and the alias must not stay "in flight" in the VM's record
// for ever. If it did, the unplugging mark could never be reconciled: the
// removal would never be reported and the mark (and the alias) would be
// kept and rewritten into the domain's metadata for the VM's lifetime.

import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LibvirtConnectionError } from '../../src/libvirt/errors.js';
import { LibvirtClient } from '../../src/libvirt/index.js';
import type { LibvirtApi } from '../../src/libvirt/types.js';
import { VirtError } from '../../src/virt/errors.js';
import type { DeviceRemovedEvent } from '../../src/virt/types.js';
import { VmManager } from '../../src/virt/vm-manager.js';
import { FakeLibvirtd } from '../fakes/fake-libvirtd.js';

let fake: FakeLibvirtd;
const open: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});

afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c.close();
  await fake.stop();
});

describe('hot unplug: re-read failure after the guest released the DIMM', () => {
  it('frees the alias, and the next reload reports the removal late and clears the mark', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, unplug: 'release', eventBeforeReply: true, eventDelayMs: 0 });
    const client = await LibvirtClient.connect({ socketPath: fake.socketPath, reconnect: false });
    open.push(client);
    // getXMLDesc fails while `failXml` is set, as during a libvirt connection hiccup.
    let failXml = false;
    const api = new Proxy(client, {
      get(target, prop) {
        if (prop === 'getXMLDesc') {
          return (...a: Parameters<LibvirtClient['getXMLDesc']>) =>
            failXml
              ? Promise.reject(new LibvirtConnectionError('injected: connection trouble'))
              : target.getXMLDesc(...a);
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

    const err = await vms.hotunplugMemory(d.uuid, { alias: 'ua-a', size: 128, node: 0 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VirtError);
    expect((err as VirtError).reason).toBe('libvirt-error');
    expect(fake.getDomainState(d.uuid)?.liveDimms).toEqual([]);

    // libvirt is reachable again; the next reload of the VM (here: the resync
    // after a reconnect) must finish the bookkeeping and say so.
    failXml = false;
    const late = new Promise<DeviceRemovedEvent>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no late deviceRemoved within 5 s')), 5_000);
      vms.on('deviceRemoved', (_vmId, ev) => {
        clearTimeout(t);
        resolve(ev);
      });
    });
    client.emit('reconnected');
    expect(await late).toEqual({ alias: 'ua-a', memSize: 1024, late: true });
    expect(vms.stats(d.uuid).memoryDevices).toEqual([]);
    expect(vms.stats(d.uuid).memSize).toBe(1024);
  });
});
