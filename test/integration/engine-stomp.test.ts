// The engine's view, on a real host: JSON-RPC over STOMP with @stomp/stompjs
// (hot plug and hot unplug, a jms.queue.events subscriber hearing VM_status
// and device_removed), and the event-loss reproduction of issue 11: unplug on
// a persistent VM, SIGKILL the daemon, the guest releases, restart, a
// `vmhost-client Host ping` connects first, then the engine, which must still
// hear `device_removed ... late: true`.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Dimm, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient } from '../helpers/rpc-client.js';
import { EngineStompClient, type StompEvent } from '../helpers/stomp-client.js';
import { liveDimmAliases } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';

const cliEntry = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

const guests = useGuests();
let daemons: DaemonProcess[] = [];

beforeAll(async () => {
  await hostReady();
});
afterEach(async () => {
  await Promise.all(daemons.map((d) => d.kill()));
  daemons = [];
});

async function daemon(): Promise<DaemonProcess> {
  const d = await startDaemon({ domainPrefix: 'vmhostd-test-eng-' });
  daemons.push(d);
  return d;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

function hostPing(url: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', cliEntry, 'Host', 'ping'], {
      cwd: root,
      env: { ...process.env, VMHOSTD_URL: url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout?.on('data', (c) => {
      out += c;
    });
    p.once('close', (code) => resolve({ code, out }));
  });
}

const unplugParams = (vmId: string, d: Dimm, timeout = 60) => ({
  vmID: vmId,
  params: { vmId, memory: { size: d.size, node: d.node, alias: d.alias } },
  timeout,
});

function ok<T>(r: { result?: unknown; error?: { code: number; message: string } }): T {
  if (r.error) throw new Error(`rpc error ${r.error.code}: ${r.error.message}`);
  return r.result as T;
}

describe('an engine over STOMP on a real host', () => {
  it('plugs and unplugs over STOMP; a jms.queue.events subscriber hears VM_status and device_removed, numbered', async () => {
    const g = await guests.start({ kind: 'cooperative', persistent: true, namePrefix: 'eng-stomp' });
    const d = await daemon();
    const engine = await EngineStompClient.connect(portOf(d.url), {
      subscribeEvents: true,
      heartbeat: { incoming: 5000, outgoing: 5000 },
    });
    expect(engine.connected.headers['heart-beat']).toBe('5000,5000');
    const memTotal0 = await g.memTotalKiB();
    const plugged = ok<Stats>(
      await engine.call(
        'VM.hotplugMemory',
        { vmID: g.uuid, params: { vmId: g.uuid, memory: { size: 256, node: 0 } } },
        { flowId: 'engine-flow-plug', timeoutMs: 120_000 },
      ),
    );
    const dimm = plugged.memoryDevices[0] as Dimm;
    await g.waitForMemTotal((k) => k >= memTotal0 + 255 * 1024, 60_000);
    await d.waitForLog(
      (l) => l.msg === 'rpc call' && l.method === 'VM.hotplugMemory' && l.flowId === 'engine-flow-plug',
    );

    const removed = ok<{ status: string; alias: string }>(
      await engine.call('VM.hotunplugMemory', unplugParams(g.uuid, dimm), { timeoutMs: 120_000 }),
    );
    expect(removed).toMatchObject({ status: 'removed', alias: dimm.alias });
    const isRemoved = (e: StompEvent) => e.method === `|virt|device_removed|${g.uuid}`;
    await waitFor('device_removed over STOMP', async () => engine.events.some(isRemoved), 30_000);
    const evs = engine.events;
    expect(evs.find(isRemoved)?.params).toMatchObject({ alias: dimm.alias, late: false });
    expect(evs.some((e) => e.method === `|virt|VM_status|${g.uuid}`)).toBe(true);
    // One boot, strictly increasing sequence numbers.
    expect(new Set(evs.map((e) => e.bootId)).size).toBe(1);
    for (let i = 1; i < evs.length; i++) expect(evs[i]?.seq).toBeGreaterThan(evs[i - 1]?.seq ?? 0);
    await engine.close();
  });

  it('issue 11 reproduction: a removal found after a SIGKILL reaches the engine even though a ping client connected first', async () => {
    const g = await guests.start({ kind: 'cooperative', persistent: true, namePrefix: 'eng-loss' });
    let d = await daemon();
    const c = await TestRpcClient.connect(d.url);
    const memTotal0 = await g.memTotalKiB();
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 256, node: 0 } },
    });
    const dimm = plugged.memoryDevices[0] as Dimm;
    const memTotal = await g.waitForMemTotal((k) => k >= memTotal0 + 255 * 1024, 60_000);

    void c.call('VM.hotunplugMemory', unplugParams(g.uuid, dimm)).catch(() => undefined);
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === dimm.alias, 20_000);
    await d.kill();
    await waitFor(
      'libvirt to drop the DIMM',
      async () => !(await liveDimmAliases(g.name)).includes(dimm.alias),
      60_000,
    );
    await g.waitForMemTotal((k) => k <= memTotal - 255 * 1024, 60_000);

    d = await daemon();
    await d.waitForLog(
      (l) => l.msg === 'notification kept for clients that connect later (nobody listening)',
      20_000,
    );
    // The first client to connect: vmhost-client Host ping.
    const ping = await hostPing(d.url);
    expect(ping.code).toBe(0);
    // Then the engine, over STOMP: it still hears of the removal.
    const engine = await EngineStompClient.connect(portOf(d.url), { subscribeEvents: true });
    const isLate = (e: StompEvent) => e.method === `|virt|device_removed|${g.uuid}`;
    await waitFor('the late device_removed over STOMP', async () => engine.events.some(isLate), 15_000);
    const late = engine.events.find(isLate);
    expect(late?.params).toMatchObject({ alias: dimm.alias, late: true, memSize: plugged.memSize - 256 });

    // An engine that resumes after that event gets only what came later, once.
    const resumed = await EngineStompClient.connect(portOf(d.url), {
      subscribeEvents: { since: String(late?.seq), 'boot-id': late?.bootId ?? '' },
    });
    ok(await resumed.call('Host.ping'));
    const page = ok<{ events: { seq: number }[]; lastSeq: number }>(
      await resumed.call('Host.getEvents', { since: late?.seq ?? 0, bootId: late?.bootId }),
    );
    // Everything up to the page's lastSeq went out on the socket before the reply did.
    const replayed = resumed.events.filter((e) => e.seq <= page.lastSeq).map((e) => e.seq);
    expect(replayed).toEqual(page.events.map((e) => e.seq));
    expect(new Set(replayed).size).toBe(replayed.length);
    expect(resumed.events.some(isLate)).toBe(false);
    await Promise.all([engine.close(), resumed.close()]);
    await c.close();
  });
});
