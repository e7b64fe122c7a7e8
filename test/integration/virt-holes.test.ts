// Regressions for holes a review found in src/virt, against our fake
// libvirtd (the real RPC protocol on a unix socket) with libvirt calls made
// to fail or hang on demand: each test fails on the code before its fix.
// Last, the property that made the code have two queues per VM: an unplug
// waiting for its guest does not hold up that VM's events.

import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toRpcError } from '../../src/api/error-mapping.js';
import { LibvirtConnectionError, LibvirtError } from '../../src/libvirt/errors.js';
import { LibvirtClient } from '../../src/libvirt/index.js';
import { DomainXmlFlags, type LibvirtApi } from '../../src/libvirt/types.js';
import { RpcError } from '../../src/rpc/errors.js';
import { VirtError } from '../../src/virt/errors.js';
import type { DeviceRemovedEvent, MemoryDeviceResizeFailedEvent } from '../../src/virt/types.js';
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

type Overrides = { [K in keyof LibvirtApi]?: LibvirtApi[K] };

/** A client whose methods `overrides` replaces (each may call through to `target`). */
function intercept(target: LibvirtClient, overrides: (t: LibvirtClient) => Overrides): LibvirtApi {
  const o = overrides(target);
  return new Proxy(target, {
    get(t, prop) {
      if (prop in o) return o[prop as keyof Overrides];
      const v: unknown = Reflect.get(t, prop, t);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  }) as LibvirtApi;
}

async function connect(): Promise<LibvirtClient> {
  const client = await LibvirtClient.connect({ socketPath: fake.socketPath, reconnect: false });
  open.push(client);
  return client;
}

async function manager(api: LibvirtApi, closeTimeoutMs?: number, resizeStallMs?: number): Promise<VmManager> {
  const vms = await VmManager.start(api, {
    log: pino({ level: process.env.VMHOST_TEST_LOG ?? 'silent' }),
    unplugTimeoutMs: 5_000,
    dimmAlignmentMiB: 128,
    ...(closeTimeoutMs !== undefined ? { closeTimeoutMs } : {}),
    ...(resizeStallMs !== undefined ? { resizeStallMs } : {}),
  });
  open.push(vms);
  return vms;
}

function nextRemoval(vms: VmManager): Promise<DeviceRemovedEvent> {
  return new Promise((resolve) => vms.once('deviceRemoved', (_id, ev) => resolve(ev)));
}

/** The value of `p`, or 'still waiting' after a deadline far beyond what it needs. */
function within<T>(p: Promise<T>): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'still waiting'>((r) => {
    timer = setTimeout(() => r('still waiting'), 10_000);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => new Error('expected a failure'),
    (e: unknown) => e,
  );
}

describe('virt holes', () => {
  it('close() is bounded when the operations are done but a metadata write they left never returns', async () => {
    const d = fake.addDomain({ memoryMiB: 1024, unplug: 'release' });
    let hang = false;
    const api = intercept(await connect(), (t) => ({
      setMetadata: (...a: Parameters<LibvirtClient['setMetadata']>) =>
        hang ? new Promise<void>(() => {}) : t.setMetadata(...a),
      // The mark is written before the detach; the write clearing it after the removal hangs.
      detachDeviceFlags: (...a: Parameters<LibvirtClient['detachDeviceFlags']>) => {
        hang = true;
        return t.detachDeviceFlags(...a);
      },
    }));
    const vms = await manager(api, 200);
    await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-a' });
    const r = await vms.hotunplugMemory(d.uuid, { alias: 'ua-a', size: 128, node: 0 });
    expect(r.status).toBe('removed');
    expect(await within(vms.close().then(() => 'closed'))).toBe('closed');
  });

  it('a failed metadata write after a successful attach answers with the attached DIMM, not an internal error', async () => {
    const d = fake.addDomain({ memoryMiB: 1024 });
    let fail = false;
    const api = intercept(await connect(), (t) => ({
      setMetadata: (...a: Parameters<LibvirtClient['setMetadata']>) =>
        fail
          ? Promise.reject(new LibvirtError('injected: metadata write failed', 1, 10))
          : t.setMetadata(...a),
    }));
    const vms = await manager(api);
    fail = true;
    const s = await vms.hotplugMemory(
      d.uuid,
      { size: 128, node: 0, alias: 'ua-a' },
      { memGuaranteedSize: 1100 },
    );
    expect(s.memoryDevices.map((x) => x.alias)).toEqual(['ua-a']);
    expect(s.memGuaranteedSize).toBe(1100);
    expect(fake.getDomainState(d.uuid)?.liveDimms).toEqual(['ua-a']);
  });

  it('a DIMM the guest released while every read of the VM fails is removed from the event alone; a later resync agrees and reports nothing twice', async () => {
    // libvirt sends device-removed once the DIMM left the live definition: no re-read is needed to answer.
    const d = fake.addDomain({ memoryMiB: 1024, unplug: 'release', eventBeforeReply: true, eventDelayMs: 0 });
    let failXml = false;
    let failedReads = 0;
    const client = await connect();
    const api = intercept(client, (t) => ({
      getXMLDesc: (...a: Parameters<LibvirtClient['getXMLDesc']>) => {
        if (!failXml) return t.getXMLDesc(...a);
        failedReads++;
        return Promise.reject(new LibvirtConnectionError('injected: connection trouble'));
      },
      detachDeviceFlags: (...a: Parameters<LibvirtClient['detachDeviceFlags']>) => {
        failXml = true;
        return t.detachDeviceFlags(...a);
      },
    }));
    const vms = await manager(api);
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

  it('a DIMM removed from outside whose re-read fails is retried: it leaves the stats with no other event', async () => {
    const d = fake.addDomain({ memoryMiB: 1024 });
    let failXml = false;
    let failed = 0;
    const api = intercept(await connect(), (t) => ({
      getXMLDesc: (...a: Parameters<LibvirtClient['getXMLDesc']>) => {
        if (!failXml) return t.getXMLDesc(...a);
        failed++;
        return Promise.reject(new LibvirtConnectionError('injected: connection trouble'));
      },
    }));
    const vms = await manager(api);
    await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-a' });
    // Nobody of ours asked (virsh detach-device): only a re-read can tell.
    failXml = true;
    fake.emitDeviceRemoved(d.uuid, 'ua-a');
    await waitFor('the re-read to fail', () => failed > 0);
    expect(vms.stats(d.uuid).memoryDevices.map((x) => x.alias)).toEqual(['ua-a']);
    // libvirt answers again; the retry (no event, no reconnect) finds it gone.
    failXml = false;
    await waitFor('the retried re-read', () => vms.stats(d.uuid).memoryDevices.length === 0);
    expect(vms.stats(d.uuid).memSize).toBe(1024);
  });

  it('a resize settled after a stall whose re-read fails is answered with the sizes last read, unconfirmed; the retry reports the settle late', async () => {
    const d = fake.addDomain({
      memoryMiB: 512,
      virtioMem: [{ alias: 'ua-vm0', sizeMiB: 1024 }],
      virtioMemBehaviour: { mode: 'silent' },
    });
    let updates = 0;
    let failXml = false;
    let failed = 0;
    const api = intercept(await connect(), (t) => ({
      // The second update is the settle: libvirt takes it, then cannot be read.
      updateDeviceFlags: async (...a: Parameters<LibvirtClient['updateDeviceFlags']>) => {
        await t.updateDeviceFlags(...a);
        if (++updates === 2) failXml = true;
      },
      getXMLDesc: (...a: Parameters<LibvirtClient['getXMLDesc']>) => {
        if (!failXml) return t.getXMLDesc(...a);
        failed++;
        return Promise.reject(new LibvirtConnectionError('injected: connection trouble'));
      },
    }));
    const vms = await manager(api, undefined, 300);
    const late = new Promise<MemoryDeviceResizeFailedEvent>((resolve) =>
      vms.once('memoryDeviceResizeFailed', (_id, ev) => resolve(ev)),
    );
    const err = await within(failure(vms.resizeMemoryDevice(d.uuid, 'ua-vm0', 256, { timeoutMs: 60_000 })));
    expect(err).toBeInstanceOf(VirtError);
    expect((err as VirtError).reason).toBe('stalled');
    // Where it stopped is known; that requested is 0 now is not (the read after the settle failed).
    expect((err as VirtError).details).toMatchObject({ current: 0, requestedNow: 256, unconfirmed: true });
    expect(failed).toBeGreaterThan(0);
    expect(fake.getVirtioMem(d.uuid)).toEqual([{ alias: 'ua-vm0', requestedMiB: 0, currentMiB: 0 }]);
    expect(vms.stats(d.uuid).memoryDevices[0]).toMatchObject({ state: 'resizing', requested: 256 });
    failXml = false;
    expect(await within(late)).toEqual({
      alias: 'ua-vm0',
      reason: 'stalled',
      requested: 256,
      current: 0,
      requestedNow: 0,
      late: true,
    });
    expect(vms.stats(d.uuid).memoryDevices[0]).toMatchObject({ state: 'plugged', requested: 0, current: 0 });
    expect(updates).toBe(2);
  });

  it('a definition that cannot be read is not guessed from: the VM loads once it can be read, its DIMMs classified right', async () => {
    // Running, persistent, our metadata absent; ua-boot is in the definition (so present at boot).
    const d = fake.addDomain({
      memoryMiB: 1024,
      persistent: true,
      dimms: [{ alias: 'ua-boot', sizeMiB: 128 }],
    });
    let definitionFailures = 2;
    const api = intercept(await connect(), (t) => ({
      getXMLDesc: (...a: Parameters<LibvirtClient['getXMLDesc']>) => {
        if (((a[1] ?? 0) & DomainXmlFlags.INACTIVE) !== 0 && definitionFailures > 0) {
          definitionFailures--;
          return Promise.reject(new LibvirtError('injected: cannot read the definition', 1, 10));
        }
        return t.getXMLDesc(...a);
      },
    }));
    const vms = await manager(api);
    await waitFor('the VM loaded', () => vms.list().some((v) => v.vmId === d.uuid));
    const err = await failure(vms.hotunplugMemory(d.uuid, { alias: 'ua-boot', size: 128, node: 0 }));
    expect((err as VirtError).reason).toBe('not-hotplugged');
    expect(definitionFailures).toBe(0);
  });

  it('a closing manager refuses work with a typed error that the API answers as -32000', async () => {
    const d = fake.addDomain({ memoryMiB: 1024 });
    const vms = await manager(await connect());
    await vms.close();
    const err = await failure(vms.hotplugMemory(d.uuid, { size: 128, node: 0 }));
    expect(err).toBeInstanceOf(VirtError);
    expect((err as VirtError).kind).toBe('shutting-down');
    const rpc = toRpcError(err);
    expect(rpc).toBeInstanceOf(RpcError);
    expect((rpc as RpcError).code).toBe(-32000);
  });

  it("an unplug waiting for the guest does not hold up the VM's events: a late removal is reported meanwhile", async () => {
    const d = fake.addDomain({ memoryMiB: 1024, unplug: 'silent', silentDelayMs: 60_000 });
    const vms = await manager(await connect());
    await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-early' });
    await vms.hotplugMemory(d.uuid, { size: 128, node: 0, alias: 'ua-wait' });
    const timedOut = await failure(
      vms.hotunplugMemory(d.uuid, { alias: 'ua-early', size: 128, node: 0 }, { timeoutMs: 100 }),
    );
    expect((timedOut as VirtError).reason).toBe('timeout');
    const waiting = vms.hotunplugMemory(
      d.uuid,
      { alias: 'ua-wait', size: 128, node: 0 },
      { timeoutMs: 60_000 },
    );
    await waitFor('ua-wait unplugging', () =>
      vms.stats(d.uuid).memoryDevices.some((x) => x.alias === 'ua-wait' && x.state === 'unplugging'),
    );
    const late = nextRemoval(vms);
    fake.emitDeviceRemoved(d.uuid, 'ua-early');
    expect(await within(late)).toEqual({ alias: 'ua-early', memSize: 1152, late: true });
    const sizes = vms.stats(d.uuid).memoryDevices.map((x) => [x.alias, x.state]);
    expect(sizes).toEqual([['ua-wait', 'unplugging']]);
    // ...and the waiting unplug is still answered by its own event.
    fake.emitDeviceRemoved(d.uuid, 'ua-wait');
    expect(await within(waiting)).toMatchObject({ status: 'removed', alias: 'ua-wait', memSize: 1024 });
  });
});
