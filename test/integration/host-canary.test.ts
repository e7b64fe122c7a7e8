// Canary for the test host, independent of vmhostd's own code: real libvirtd,
// real QEMU guests, virsh for attach/detach and events. If this fails, every
// other integration test result is suspect.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Guest, hostReady, useGuests, virsh } from '../helpers/guest.js';
import { watchDomainEvents } from '../helpers/virsh-events.js';
import { dimmXml } from '../host/domain-xml.js';

const DIMM_MIB = 128;
const DIMM_KIB = DIMM_MIB * 1024;

let dir: string;
beforeAll(async () => {
  await hostReady();
  dir = await mkdtemp(join(tmpdir(), 'vmhostd-canary-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function xmlFile(name: string, xml: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, xml);
  return path;
}

/** The live `<memory model='dimm'>` elements of the domain (alias + address make detach exact). */
async function liveDimms(guest: Guest): Promise<string[]> {
  const xml = await virsh(['dumpxml', guest.name]);
  return xml.match(/<memory model='dimm'[\s\S]*?<\/memory>/g) ?? [];
}

/** Attaches one DIMM and waits for libvirt's device-added event; returns the live DIMM XML. */
async function attachDimm(guest: Guest, events: ReturnType<typeof watchDomainEvents>): Promise<string> {
  const before = await liveDimms(guest);
  await virsh([
    'attach-device',
    guest.name,
    await xmlFile(`${guest.name}-add.xml`, dimmXml(DIMM_MIB)),
    '--live',
  ]);
  // Also proves the event watcher is subscribed before we detach.
  await events.waitFor(/event 'device-added'/, 15_000);
  const after = await liveDimms(guest);
  expect(after).toHaveLength(before.length + 1);
  const added = after.find((d) => !before.includes(d));
  expect(added).toMatch(/<alias name='[^']+'\/>/);
  return added ?? '';
}

describe('test host canary', () => {
  const guests = useGuests();

  it('a cooperative guest onlines a hot-plugged DIMM and releases it on detach', async () => {
    const guest = await guests.start({ kind: 'cooperative', namePrefix: 'canary-coop' });
    const events = watchDomainEvents(guest.name);
    try {
      const base = await guest.memTotalKiB();

      const dimm = await attachDimm(guest, events);
      const grown = await guest.waitForMemTotal((k) => k === base + DIMM_KIB, 20_000);
      expect(grown - base).toBe(DIMM_KIB);

      const t0 = performance.now();
      await virsh(['detach-device', guest.name, await xmlFile(`${guest.name}-del.xml`, dimm), '--live']);
      const removed = await events.waitFor(/event 'device-removed'/, 20_000);
      const unplugMs = performance.now() - t0;
      const alias = /<alias name='([^']+)'/.exec(dimm)?.[1];
      expect(removed).toContain(alias);
      expect(await liveDimms(guest)).toHaveLength(0);
      await guest.waitForMemTotal((k) => k === base, 20_000);
      // Still released a second later: the guest really let go.
      await guest.waitForConsole(/VMHOST-GUEST MEMTOTAL/, 5_000, { onlyNew: true });
      expect(await guest.memTotalKiB()).toBe(base);
      console.info(`canary: cooperative unplug of ${DIMM_MIB} MiB took ${unplugMs.toFixed(0)} ms`);
    } finally {
      await events.stop();
    }
  });

  it('a rejecting guest keeps a hot-plugged DIMM and libvirt reports device-removal-failed', async () => {
    const guest = await guests.start({ kind: 'rejecting', namePrefix: 'canary-rej' });
    const events = watchDomainEvents(guest.name);
    try {
      const base = await guest.memTotalKiB();
      const dimm = await attachDimm(guest, events);
      await guest.waitForMemTotal((k) => k === base + DIMM_KIB, 20_000);
      // /init has pinned kernel objects in the new block (verified in-guest by a failed offline).
      await guest.waitForConsole(/VMHOST-GUEST PINNED block=/, 60_000);

      const detach = virsh([
        'detach-device',
        guest.name,
        await xmlFile(`${guest.name}-del.xml`, dimm),
        '--live',
      ]);
      await expect(detach).rejects.toThrow(/rejected by the guest/);
      await events.waitFor(/event 'device-removal-failed'/, 20_000);
      expect(events.lines.some((l) => l.includes("'device-removed'"))).toBe(false);
      expect(await liveDimms(guest)).toHaveLength(1);
      // MemTotal stays grown: the guest still uses the DIMM.
      await guest.waitForConsole(/VMHOST-GUEST MEMTOTAL/, 5_000, { onlyNew: true });
      expect(await guest.memTotalKiB()).toBe(base + DIMM_KIB);
    } finally {
      await events.stop();
    }
  });

  it('a silent guest never answers: detach returns after libvirt gives up waiting and the DIMM stays', async () => {
    const guest = await guests.start({ kind: 'silent', namePrefix: 'canary-silent' });
    const events = watchDomainEvents(guest.name);
    try {
      const base = await guest.memTotalKiB();
      const dimm = await attachDimm(guest, events);
      const t0 = performance.now();
      await virsh(['detach-device', guest.name, await xmlFile(`${guest.name}-del.xml`, dimm), '--live']);
      // libvirt waits ~5 s for the guest, then returns success with the unplug still pending.
      expect(performance.now() - t0).toBeGreaterThan(4_000);
      expect(await liveDimms(guest)).toHaveLength(1);
      await guest.waitForConsole(/VMHOST-GUEST MEMTOTAL/, 5_000, { onlyNew: true });
      // Without ACPI the guest never even saw the DIMM.
      expect(await guest.memTotalKiB()).toBe(base);
      expect(events.lines.some((l) => /'device-removed'|'device-removal-failed'/.test(l))).toBe(false);
    } finally {
      await events.stop();
    }
  });
});
