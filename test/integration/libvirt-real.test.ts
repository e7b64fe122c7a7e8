// The libvirt client against the host's real libvirtd and real QEMU guests.
// This is the truth the fake is measured against.

import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DomainAffect,
  DomainXmlFlags,
  defaultSocketPath,
  JobType,
  LibvirtClient,
  type LibvirtClientEvents,
  LibvirtError,
  LifecycleEvent,
  MetadataType,
} from '../../src/libvirt/index.js';
import { hostReady, useGuests } from '../helpers/guest.js';

let client: LibvirtClient;
const guests = useGuests();

beforeAll(async () => {
  await hostReady();
  client = await LibvirtClient.connect({ socketPath: defaultSocketPath() });
});

afterAll(async () => {
  await client?.close();
});

function nextEvent<K extends keyof LibvirtClientEvents>(
  event: K,
  pred: (...args: LibvirtClientEvents[K]) => boolean,
  ms = 30_000,
): Promise<LibvirtClientEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(event, listener);
      reject(new Error(`no matching '${event}' event within ${ms} ms`));
    }, ms);
    const listener = (...args: LibvirtClientEvents[K]) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      client.off(event, listener);
      resolve(args);
    };
    client.on(event, listener);
  });
}

const dimmXml = (alias: string, sizeMiB = 128) =>
  `<memory model='dimm'><target><size unit='MiB'>${sizeMiB}</size><node>0</node></target><alias name='${alias}'/></memory>`;

describe('libvirt client against the real libvirtd', () => {
  it('opens, reports versions, lists and looks up domains, reads live and inactive XML', async () => {
    expect(client.connected).toBe(true);
    expect(await client.getLibVersion()).toBeGreaterThanOrEqual(9_000_000);
    expect(await client.getVersion()).toBeGreaterThanOrEqual(7_000_000); // QEMU 7.x
    expect((await client.getHostname()).length).toBeGreaterThan(0);

    const g = await guests.start({ kind: 'cooperative', persistent: true, namePrefix: 'lv-basic' });
    const all = await client.listAllDomains();
    expect(all.map((d) => d.uuid)).toContain(g.uuid);
    const dom = await client.lookupByUUID(g.uuid);
    expect(dom.name).toBe(g.name);
    expect(dom.id).toBeGreaterThan(0);
    expect(await client.getState(dom)).toMatchObject({ state: 1 });
    // No job on an idle running guest: type NONE (the migration check's "not migrating").
    expect((await client.getJobStats(dom)).type).toBe(JobType.NONE);

    const live = await client.getXMLDesc(dom);
    expect(live).toContain(`<uuid>${g.uuid}</uuid>`);
    expect(live).toMatch(new RegExp(`<domain type='qemu' id='${dom.id}'>`));
    const inactive = await client.getXMLDesc(dom, DomainXmlFlags.INACTIVE);
    expect(inactive).toMatch(/^<domain type='qemu'>/);
    expect(inactive).toContain("<maxMemory slots='16'");

    // Metadata: absent -> code 80; set live -> readable and visible in the live XML.
    const uri = `http://vmhostd.test/${randomUUID()}`;
    await expect(client.getMetadata(dom, MetadataType.ELEMENT, uri, DomainAffect.LIVE)).rejects.toMatchObject(
      {
        code: 80,
      },
    );
    await client.setMetadata(
      dom,
      MetadataType.ELEMENT,
      '<vm guaranteed="900"/>',
      'vmh',
      uri,
      DomainAffect.LIVE,
    );
    expect(await client.getMetadata(dom, MetadataType.ELEMENT, uri, DomainAffect.LIVE)).toBe(
      '<vm guaranteed="900"/>',
    );
    expect(await client.getXMLDesc(dom)).toContain(`<vmh:vm xmlns:vmh="${uri}" guaranteed="900"/>`);
  });

  it('gives code 42 for an unknown UUID', async () => {
    const err = await client.lookupByUUID(randomUUID()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(err).toMatchObject({ code: 42, message: expect.stringMatching(/Domain not found/) });
  });

  it('attaches a DIMM the guest onlines, detaches it and reports deviceRemoved with its alias', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'lv-coop' });
    const dom = await client.lookupByUUID(g.uuid);
    const before = await g.memTotalKiB();
    const alias = `ua-${randomUUID()}`;
    // libvirt 9 names the memory backend object in device-added for a DIMM: "mem" + the alias.
    const added = nextEvent('deviceAdded', (e) => e.domain.uuid === g.uuid && e.alias === `mem${alias}`);
    await client.attachDeviceFlags(dom, dimmXml(alias), DomainAffect.LIVE);
    expect((await added)[0].domain.name).toBe(g.name);
    await g.waitForMemTotal((kib) => kib >= before + 128 * 1024 - 1024);
    expect(await client.getXMLDesc(dom)).toContain(`<alias name='${alias}'/>`);

    const removed = nextEvent('deviceRemoved', (e) => e.domain.uuid === g.uuid);
    await client.detachDeviceFlags(dom, dimmXml(alias), DomainAffect.LIVE);
    const [ev] = await removed;
    expect(ev.alias).toBe(alias);
    expect(await client.getXMLDesc(dom)).not.toContain(alias);
    await g.waitForMemTotal((kib) => kib <= before);
  });

  it('fails the detach with the rejection and reports deviceRemovalFailed for a rejecting guest', async () => {
    const g = await guests.start({ kind: 'rejecting', namePrefix: 'lv-rej' });
    const dom = await client.lookupByUUID(g.uuid);
    const before = await g.memTotalKiB();
    const alias = `ua-${randomUUID()}`;
    await client.attachDeviceFlags(dom, dimmXml(alias), DomainAffect.LIVE);
    await g.waitForMemTotal((kib) => kib >= before + 128 * 1024 - 1024);
    // Let the guest's /init pin kernel objects in the new block.
    await g.waitForConsole(/VMHOST-GUEST MEMTOTAL/, 10_000, { onlyNew: true });

    const failed = nextEvent('deviceRemovalFailed', (e) => e.domain.uuid === g.uuid);
    const err = await client
      .detachDeviceFlags(dom, dimmXml(alias), DomainAffect.LIVE)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).message).toMatch(/rejected by the guest/);
    expect((err as LibvirtError).code).toBe(9); // VIR_ERR_OPERATION_FAILED
    const [ev] = await failed;
    expect(ev.alias).toBe(alias);
    expect(await client.getXMLDesc(dom)).toContain(`<alias name='${alias}'/>`);
  });

  it('keeps the event loop ticking during a ~5 s detach of a silent guest', async () => {
    const g = await guests.start({ kind: 'silent', namePrefix: 'lv-silent' });
    const dom = await client.lookupByUUID(g.uuid);
    const alias = `ua-${randomUUID()}`;
    await client.attachDeviceFlags(dom, dimmXml(alias), DomainAffect.LIVE);

    let ticks = 0;
    let maxGap = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
    }, 10);
    const t0 = performance.now();
    try {
      await client.detachDeviceFlags(dom, dimmXml(alias), DomainAffect.LIVE);
    } finally {
      clearInterval(timer);
    }
    const elapsed = performance.now() - t0;
    console.info(
      `silent detach: ${Math.round(elapsed)} ms, ${ticks} ticks of a 10 ms timer, max gap ${maxGap.toFixed(1)} ms`,
    );
    // libvirt waits ~5 s for the guest, then returns success with the DIMM still there.
    expect(elapsed).toBeGreaterThan(4_000);
    expect(ticks).toBeGreaterThan((elapsed / 10) * 0.5);
    expect(maxGap).toBeLessThan(200);
    expect(await client.getXMLDesc(dom)).toContain(`<alias name='${alias}'/>`);
  });

  it('raises a lifecycle event when a domain is destroyed', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'lv-life' });
    const dom = await client.lookupByUUID(g.uuid);
    const stopped = nextEvent(
      'lifecycle',
      (e) => e.domain.uuid === g.uuid && e.event === LifecycleEvent.STOPPED,
    );
    await client.destroy(dom);
    const [ev] = await stopped;
    expect(ev.domain.name).toBe(g.name);
    expect(ev.detail).toBe(1); // VIR_DOMAIN_EVENT_STOPPED_DESTROYED
    await expect(client.lookupByUUID(g.uuid)).rejects.toMatchObject({ code: 42 });
  });
});
