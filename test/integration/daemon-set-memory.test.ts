// "Set memory to X" end to end: the feature page's worked example on a real
// persistent cooperative guest, once through JSON-RPC and once by sending the
// page's REST request verbatim.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SetMemoryResult, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient as Client, expectRpcError, type TestRpcClient } from '../helpers/rpc-client.js';
import { virsh } from '../helpers/virsh.js';

const MiB = 1024 * 1024;
const guests = useGuests();
let d: DaemonProcess;
let c: TestRpcClient;

async function inactiveMemoryMiB(g: Guest): Promise<number> {
  const xml = await virsh('dumpxml', '--inactive', g.name);
  const m = /<memory unit='KiB'>(\d+)<\/memory>/.exec(xml);
  if (!m) throw new Error('no <memory> in inactive XML');
  return Number(m[1]) / 1024;
}

/** Boots the worked example: 1024 MiB base plus DIMMs of 256, 256, 128, 128 MiB. */
async function workedExampleVm(prefix: string): Promise<{ g: Guest; stats: Stats; memTotal: number }> {
  const g = await guests.start({
    kind: 'cooperative',
    memoryMiB: 1024,
    persistent: true,
    namePrefix: prefix,
  });
  expect(await inactiveMemoryMiB(g)).toBe(1024);
  const memTotal0 = await g.memTotalKiB();
  let stats: Stats | undefined;
  for (const size of [256, 256, 128, 128]) {
    stats = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size, node: 0 } },
    });
  }
  expect(stats!.memSize).toBe(1792);
  expect(await inactiveMemoryMiB(g)).toBe(1792);
  // The guest onlines the new blocks a little after libvirt reports them.
  const memTotal = await g.waitForMemTotal((k) => k >= memTotal0 + 768 * 1024 - 1024, 60_000);
  return { g, stats: stats!, memTotal };
}

function sizesOf(unplugged: { alias: string }[], stats: Stats): number[] {
  return unplugged
    .map((u) => stats.memoryDevices.find((x) => x.alias === u.alias)!.size)
    .sort((a, b) => b - a);
}

beforeAll(async () => {
  await hostReady();
  d = await startDaemon({ domainPrefix: 'vmhostd-test-sm-' });
  c = await Client.connect(d.url);
});
afterAll(async () => {
  await c?.close();
  await d?.stop();
});

describe('VM.setMemory: the feature page worked example', () => {
  it('through JSON-RPC: unplugs 256 + 128, ends at 1408 MiB, guaranteed 900, next run 1400', async () => {
    const { g, stats, memTotal } = await workedExampleVm('sm-rpc');
    const r = await c.call<SetMemoryResult>('VM.setMemory', {
      vmID: g.uuid,
      memory: 1400 * MiB,
      guaranteed: 900 * MiB,
    });
    expect(sizesOf(r.unplugged, stats)).toEqual([256, 128]);
    expect(r.failed).toEqual([]);
    expect(r.memSize).toBe(1408);
    expect(r.memGuaranteedSize).toBe(900);
    expect(r.nextRun).toEqual({ updated: true, memory: 1400, guaranteed: 900 });
    await g.waitForMemTotal((k) => k <= memTotal - 384 * 1024 + 1024, 60_000);
    expect(await inactiveMemoryMiB(g)).toBe(1400);
    const after = await c.stats(g.uuid);
    expect(after.memSize).toBe(1408);
    expect(after.memGuaranteedSize).toBe(900);
    expect(after.memoryDevices.map((x) => x.size).sort((a, b) => b - a)).toEqual([256, 128]);
  });

  it("through the page's REST request, verbatim", async () => {
    const { g, stats, memTotal } = await workedExampleVm('sm-rest');
    const http = d.url.replace(/^ws/, 'http').replace(/\/jsonrpc$/, '');
    const body =
      '<vm>\n  <memory>1468006400</memory>\n  <memory_policy>\n    <guaranteed>943718400</guaranteed>\n  </memory_policy>\n</vm>';
    const res = await fetch(`${http}/api/vms/${g.uuid}`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/xml' },
      body,
    });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(text).toContain(`<memory>${1408 * MiB}</memory>`);
    expect(text).toContain(`<guaranteed>${900 * MiB}</guaranteed>`);
    await g.waitForMemTotal((k) => k <= memTotal - 384 * 1024 + 1024, 60_000);
    const after = await c.stats(g.uuid);
    expect(after.memSize).toBe(1408);
    expect(after.memoryDevices.map((x) => x.size).sort((a, b) => b - a)).toEqual([256, 128]);
    expect(stats.memoryDevices).toHaveLength(4);
    expect(await inactiveMemoryMiB(g)).toBe(1400);
  });

  it('leaves the next-run configuration alone when its memory differs from the running memory', async () => {
    const { g } = await workedExampleVm('sm-next');
    // Someone edits the next-run definition to 2048 MiB.
    const xml = (await virsh('dumpxml', '--inactive', g.name))
      .replace(/<memory unit='KiB'>\d+<\/memory>/, `<memory unit='KiB'>${2048 * 1024}</memory>`)
      .replace(
        /<currentMemory unit='KiB'>\d+<\/currentMemory>/,
        `<currentMemory unit='KiB'>${2048 * 1024}</currentMemory>`,
      )
      .replace(/(<cell [^>]*memory=')\d+(')/, `$1${2048 * 1024}$2`);
    const { writeFile, mkdtemp } = await import('node:fs/promises');
    const dir = await mkdtemp('/tmp/vmhostd-test-');
    await writeFile(`${dir}/d.xml`, xml);
    await virsh('define', `${dir}/d.xml`);
    expect(await inactiveMemoryMiB(g)).toBe(2048);
    const r = await c.call<SetMemoryResult>('VM.setMemory', { vmID: g.uuid, memory: 1536 * MiB });
    expect(r.memSize).toBe(1536);
    expect(r.nextRun.updated).toBe(false);
    expect(await inactiveMemoryMiB(g)).toBe(2048);
  });

  it('rejects guaranteed above memory, and bad REST bodies, changing nothing', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'sm-bad' });
    const before = await c.stats(g.uuid);
    const e = await expectRpcError(
      c.call('VM.setMemory', { vmID: g.uuid, memory: 256 * MiB, guaranteed: 512 * MiB }),
    );
    expect(e.code).toBe(-32602);
    expect(e.error.data?.field).toBe('guaranteed');

    const http = d.url.replace(/^ws/, 'http').replace(/\/jsonrpc$/, '');
    const put = (body: string, type = 'application/xml') =>
      fetch(`${http}/api/vms/${g.uuid}`, { method: 'PUT', headers: { 'Content-Type': type }, body });
    for (const [body, type] of [
      ['<vm><memory>abc</memory></vm>', 'application/xml'],
      ['<vm><memory>1</memory', 'application/xml'],
      ['{"memory": 1}', 'application/json'],
      ['<!DOCTYPE vm [<!ENTITY x "1">]><vm><memory>&x;</memory></vm>', 'application/xml'],
      [`<vm><memory>${'9'.repeat(300_000)}</memory></vm>`, 'application/xml'],
    ] as const) {
      const res = await put(body, type);
      expect([400, 413, 415]).toContain(res.status);
      expect(await res.text()).toMatch(/<fault>/);
    }
    const missing = await fetch(`${http}/api/vms/00000000-0000-4000-8000-000000000001`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/xml' },
      body: '<vm><memory>1073741824</memory></vm>',
    });
    expect(missing.status).toBe(404);
    const after = await c.stats(g.uuid);
    expect(after.hash).toBe(before.hash);
    expect(after.memSize).toBe(before.memSize);
  });
});
