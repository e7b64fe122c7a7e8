// virtio-mem through the daemon on real virtio-mem guests (the Debian cloud
// kernel's virtio_mem driver): VmStats, VM.resizeMemoryDevice both ways with
// its notifications, a shrink the guest cannot finish, and bad input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SetMemoryResult, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, useGuests } from '../helpers/guest.js';
import {
  TestRpcClient as Client,
  expectRpcError,
  type TestRpcClient,
  vmStatusStats,
} from '../helpers/rpc-client.js';
import { virsh } from '../helpers/virsh.js';

const guests = useGuests();
let d: DaemonProcess;
let c: TestRpcClient;
let dir: string;

// Long enough for a loaded TCG guest to start moving, short enough for the stalled test.
const STALL_S = 15;
const MiB = 1024 * 1024;

beforeAll(async () => {
  await hostReady();
  dir = mkdtempSync(join(tmpdir(), 'vmhostd-vmem-'));
  const config = join(dir, 'vmhostd.toml');
  writeFileSync(config, `[memory]\nresize_stall_timeout = ${STALL_S}\n`);
  d = await startDaemon({ domainPrefix: 'vmhostd-test-vm-', args: ['--config', config] });
  c = await Client.connect(d.url);
});
afterAll(async () => {
  await c?.close();
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Resized {
  alias: string;
  requested: number;
  current: number;
  memSize: number;
}
interface SizeEvent {
  alias: string;
  requested: number;
  current: number;
}

function vmemGuest(kind: 'virtio-mem' | 'virtio-mem-rejecting', prefix: string): Promise<Guest> {
  return guests.start({
    kind,
    memoryMiB: 256,
    maxMemoryMiB: 2048,
    namePrefix: prefix,
    virtioMem: [{ alias: 'ua-vmem0', sizeMiB: 1024, requestedMiB: 0 }],
  });
}

/** requested and current (MiB) of the device, as libvirt holds them. */
async function liveSizes(g: Guest): Promise<{ requested: number; current: number }> {
  const xml = await virsh('dumpxml', g.name);
  const req = /<requested unit='KiB'>(\d+)<\/requested>/.exec(xml);
  const cur = /<current unit='KiB'>(\d+)<\/current>/.exec(xml);
  if (!req || !cur) throw new Error('no virtio-mem sizes in the live XML');
  return { requested: Number(req[1]) / 1024, current: Number(cur[1]) / 1024 };
}

/** The notifications about this VM from index `from` on: size changes and statuses, in order. */
function vmNotes(vmId: string, from: number): { method: string; params: unknown }[] {
  return c.notifications
    .slice(from)
    .filter((n) => n.method.endsWith(`|${vmId}`))
    .map((n) => ({ method: n.method.split('|')[2] ?? '', params: n.params }));
}

describe('VM.resizeMemoryDevice (real guests)', () => {
  it('stats count current not maximum; bad input changes nothing; grows 0 -> 512 and shrinks 512 -> 128 MiB (results, MemTotal, notifications in order); an outside resize shows; setMemory lands exactly (virtio-mem alone up, DIMM then virtio-mem down)', async () => {
    const g = await vmemGuest('virtio-mem', 'vm-resize');
    const memTotal0 = await g.memTotalKiB();
    const s0 = await c.stats(g.uuid);
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

    // Bad input first, on the untouched device: clear errors, nothing changed.
    const bad = async (params: Record<string, unknown>) =>
      expectRpcError(c.call('VM.resizeMemoryDevice', { vmID: g.uuid, alias: 'ua-vmem0', ...params }));
    const notBlock = await bad({ requested: 3 });
    expect([notBlock.code, notBlock.error.data]).toMatchObject([
      -32602,
      { field: 'requested', rule: 'multipleOf' },
    ]);
    const aboveMax = await bad({ requested: 1026 });
    expect([aboveMax.code, aboveMax.error.data]).toMatchObject([
      -32602,
      { field: 'requested', rule: 'maximum' },
    ]);
    const negative = await bad({ requested: -2 });
    expect(negative.code).toBe(-32602);
    expect(JSON.stringify(negative.error.data)).toMatch(/requested/);
    const unknown = await bad({ requested: 2, alias: 'ua-nope' });
    expect([unknown.code, (unknown.error.data as { reason: string }).reason]).toEqual([
      85,
      'device-not-found',
    ]);
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 128, node: 0, alias: 'ua-dimm1' } },
    });
    expect(plugged.memSize).toBe(256 + 128);
    const dimm = await bad({ requested: 2, alias: 'ua-dimm1' });
    expect([dimm.code, dimm.error.data]).toMatchObject([
      -32602,
      { field: 'alias', rule: 'virtio-mem device' },
    ]);
    expect(dimm.message).toMatch(/DIMM/);
    expect(await liveSizes(g)).toEqual({ requested: 0, current: 0 });
    await g.waitForMemTotal((kib) => kib === memTotal0 + 128 * 1024, 60_000);
    const base = memTotal0 + 128 * 1024;

    // Grow.
    const mark = c.notifications.length;
    const grown = await c.call<Resized>('VM.resizeMemoryDevice', {
      vmID: g.uuid,
      alias: 'ua-vmem0',
      requested: 512,
      timeout: 120,
    });
    expect(grown).toEqual({
      alias: 'ua-vmem0',
      requested: 512,
      current: 512,
      memSize: 256 + 128 + 512,
      nextRun: { updated: false, requested: 512 },
    });
    expect(await liveSizes(g)).toEqual({ requested: 512, current: 512 });
    await g.waitForMemTotal((kib) => kib === base + 512 * 1024, 60_000);
    await c.waitForNotification(
      (n) => n.method === `|virt|VM_status|${g.uuid}` && vmStatusStats(n, g.uuid).memSize === 896,
    );
    const growNotes = vmNotes(g.uuid, mark);
    const growSizes = growNotes
      .filter((n) => n.method === 'memory_device_size_changed')
      .map((n) => n.params as SizeEvent);
    expect(growSizes.length).toBeGreaterThan(0);
    expect(growSizes.every((e) => e.alias === 'ua-vmem0' && e.requested === 512)).toBe(true);
    for (let i = 1; i < growSizes.length; i++)
      expect(growSizes[i]!.current).toBeGreaterThan(growSizes[i - 1]!.current);
    expect(growSizes.at(-1)!.current).toBe(512);
    // The last word on the VM is its status with the new size, after the last size change.
    const lastGrow = growNotes.at(-1)!;
    expect(lastGrow.method).toBe('VM_status');
    expect((lastGrow.params as Record<string, Stats>)[g.uuid]?.memSize).toBe(896);

    // Shrink, to a size no DIMM could reach (128 MiB is one block group; any 2 MiB multiple works).
    const mark2 = c.notifications.length;
    const shrunk = await c.call<Resized>('VM.resizeMemoryDevice', {
      vmID: g.uuid,
      alias: 'ua-vmem0',
      requested: 128,
      timeout: 120,
    });
    expect(shrunk).toEqual({
      alias: 'ua-vmem0',
      requested: 128,
      current: 128,
      memSize: 256 + 128 + 128,
      nextRun: { updated: false, requested: 128 },
    });
    await g.waitForMemTotal((kib) => kib === base + 128 * 1024, 60_000);
    const stats = await c.stats(g.uuid);
    expect(stats.memSize).toBe(512);
    expect(stats.memoryDevices.find((x) => x.alias === 'ua-vmem0')).toMatchObject({
      model: 'virtio-mem',
      requested: 128,
      current: 128,
      state: 'plugged',
    });
    await c.waitForNotification(
      (n) => n.method === `|virt|VM_status|${g.uuid}` && vmStatusStats(n, g.uuid).memSize === 512,
    );
    const shrinkSizes = vmNotes(g.uuid, mark2)
      .filter((n) => n.method === 'memory_device_size_changed')
      .map((n) => (n.params as SizeEvent).current);
    for (let i = 1; i < shrinkSizes.length; i++) expect(shrinkSizes[i]!).toBeLessThan(shrinkSizes[i - 1]!);
    expect(shrinkSizes.at(-1)).toBe(128);

    // An operator resizes with virsh, outside the daemon: the size-change events bring the stats along.
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
      return vmStatusStats(x, g.uuid).memSize === 256 + 128 + 130;
    }, 60_000);
    const s1 = vmStatusStats(n, g.uuid);
    expect(s1.memoryDevices.find((x) => x.alias === 'ua-vmem0')).toMatchObject({
      requested: 130,
      current: 130,
    });
    expect(s1.hash).not.toBe(stats.hash);
    await g.waitForMemTotal((kib) => kib === base + 130 * 1024, 60_000);

    // "Set memory to X" lands exactly on sizes no DIMM can reach: up through virtio-mem alone, ...
    const up = await c.call<SetMemoryResult>('VM.setMemory', {
      vmID: g.uuid,
      memory: 700 * MiB,
      timeout: 120,
    });
    expect(up).toMatchObject({
      memSize: 700,
      unplugged: [],
      failed: [],
      resized: [{ alias: 'ua-vmem0', requested: 316, current: 316 }],
    });
    await g.waitForMemTotal((kib) => kib === base + 316 * 1024, 60_000);
    // ... and down with both kinds: the 128 MiB DIMM goes first, virtio-mem takes the exact remainder.
    const down = await c.call<SetMemoryResult>('VM.setMemory', {
      vmID: g.uuid,
      memory: 450 * MiB,
      timeout: 120,
    });
    expect(down).toMatchObject({
      memSize: 450,
      unplugged: [{ alias: 'ua-dimm1', size: 128 }],
      resized: [{ alias: 'ua-vmem0', requested: 194, current: 194 }],
      failed: [],
    });
    await g.waitForMemTotal((kib) => kib === memTotal0 + 194 * 1024, 60_000);
    expect(await liveSizes(g)).toEqual({ requested: 194, current: 194 });
  });

  it('a shrink the guest cannot finish (kernel memory pinned): stalled with the true current; settle by default, keep on request', async () => {
    const g = await vmemGuest('virtio-mem-rejecting', 'vm-stall');
    const grown = await c.call<Resized>('VM.resizeMemoryDevice', {
      vmID: g.uuid,
      alias: 'ua-vmem0',
      requested: 256,
      timeout: 120,
    });
    expect(grown.current).toBe(256);
    // Both 128 MiB memory blocks of the device have kernel objects pinned in them.
    const first = (await g.waitForConsole(/VMHOST-GUEST PINNED block=(memory\d+)/, 90_000))[1];
    await g.waitForConsole(new RegExp(`VMHOST-GUEST PINNED block=(?!${first}\\b)memory\\d+`), 90_000);

    const e = await expectRpcError(
      c.call('VM.resizeMemoryDevice', { vmID: g.uuid, alias: 'ua-vmem0', requested: 0, timeout: 300 }),
    );
    expect(e.code).toBe(85);
    const data = e.error.data as {
      reason: string;
      alias: string;
      requested: number;
      current: number;
      requestedNow: number;
    };
    expect(data.reason).toBe('stalled');
    expect(data.alias).toBe('ua-vmem0');
    expect(data.requested).toBe(0);
    expect(data.current).toBeGreaterThan(0);
    expect(data.current).toBeLessThanOrEqual(256);
    // The reported current is libvirt's, and the default settles requested there: nothing moves later.
    expect(await liveSizes(g)).toEqual({ requested: data.current, current: data.current });
    expect(data.requestedNow).toBe(data.current);
    const st = await c.stats(g.uuid);
    expect(st.memSize).toBe(256 + data.current);
    expect(st.memoryDevices[0]).toMatchObject({
      requested: data.current,
      current: data.current,
      state: 'plugged',
    });

    // onFailure 'keep': the same stall, but requested stays where the caller asked.
    const kept = await expectRpcError(
      c.call('VM.resizeMemoryDevice', {
        vmID: g.uuid,
        alias: 'ua-vmem0',
        requested: 0,
        timeout: 300,
        onFailure: 'keep',
      }),
    );
    const kd = kept.error.data as { reason: string; current: number; requestedNow: number };
    expect(kd.reason).toBe('stalled');
    expect(kd.requestedNow).toBe(0);
    const after = await liveSizes(g);
    expect(after.requested).toBe(0);
    expect(after.current).toBeGreaterThan(0);
    const st2 = await c.stats(g.uuid);
    expect(st2.memoryDevices[0]).toMatchObject({ requested: 0, state: 'resizing' });
  });
});
