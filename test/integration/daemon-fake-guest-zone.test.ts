// The guest-movability probe through the daemon, on the fake libvirtd's agent
// passthrough, for what a real guest cannot do on demand: a DIMM in
// ZONE_NORMAL at will, an agent that never answers, one whose policy blocks
// guest-file-*, a zone that changes behind the cache. Real guests:
// guest-recipes.test.ts.
import { describe, expect, it } from 'vitest';
import type { FakeGuestAgent } from '../fakes/fake-libvirtd.js';
import type { SetMemoryResult, Stats } from '../helpers/api-types.js';
import type { FakeDaemon } from '../helpers/fake-daemon.js';
import { waitFor } from '../helpers/fake-daemon.js';
import { fakeDaemonPerTest } from '../helpers/fake-daemon-fixture.js';
import { type TestRpcClient as Client, expectRpcError, vmStatusStats } from '../helpers/rpc-client.js';

const MiB = 1024 * 1024;
const t = fakeDaemonPerTest();
/** The daemon the running test started (daemon()). */
let fd: FakeDaemon | undefined;

async function daemon(config = ''): Promise<Client> {
  const started = await t.start({ unplugTimeoutS: 5, config });
  fd = started.fd;
  return started.c;
}

function vm(agent: FakeGuestAgent | undefined, dimms: [string, number][]): string {
  return t.fake.addDomain({
    memoryMiB: 1024,
    dimms: dimms.map(([alias, sizeMiB]) => ({ alias, sizeMiB })),
    ...(agent ? { agent } : {}),
  }).uuid;
}

const unplug = (vmId: string, alias: string, size = 128, extra: Record<string, unknown> = {}) => ({
  vmID: vmId,
  params: { vmId, memory: { size, node: 0, alias } },
  timeout: 5,
  ...extra,
});

async function stats(client: Client, uuid: string): Promise<Stats> {
  const [s] = await client.call<Stats[]>('VM.getStats', { vmID: uuid });
  return s!;
}

const zones = (s: Stats) => Object.fromEntries(s.memoryDevices.map((d) => [d.alias, d.guest?.zone]));

/** Waits until the background probe has answered for every DIMM. */
function probed(client: Client, uuid: string, want: Record<string, string>): Promise<Stats> {
  return waitFor(`guest zones ${JSON.stringify(want)}`, async () => {
    const s = await stats(client, uuid);
    return JSON.stringify(zones(s)) === JSON.stringify(want) ? s : undefined;
  });
}

describe('guest zones in VmStats (background probe)', () => {
  it('shows each DIMM as the agent says, and getStats never waits for the agent', async () => {
    const uuid = vm({ mode: 'answer', zones: { 'ua-n': 'Normal', 'ua-o': 'offline' } }, [
      ['ua-m', 128],
      ['ua-n', 128],
      ['ua-o', 256],
    ]);
    const client = await daemon();
    const s = await probed(client, uuid, { 'ua-m': 'movable', 'ua-n': 'normal', 'ua-o': 'offline' });
    expect(s.memoryDevices.map((d) => d.guest)).toEqual([
      { online: true, zone: 'movable' },
      { online: true, zone: 'normal' },
      { online: false, zone: 'offline' },
    ]);
    // Stats are served from the cache: reading them asks the agent nothing.
    const asked = t.fake.callCount('QEMU_DOMAIN_AGENT_COMMAND');
    for (let i = 0; i < 5; i++) await stats(client, uuid);
    expect(t.fake.callCount('QEMU_DOMAIN_AGENT_COMMAND')).toBe(asked);
  });

  it('no agent, a silent agent, guest-file-* blocked: unknown', async () => {
    const none = vm(undefined, [['ua-a', 128]]);
    const silent = vm({ mode: 'silent' }, [['ua-b', 128]]);
    const blocked = vm({ mode: 'files-blocked' }, [['ua-c', 128]]);
    const client = await daemon();
    // The probes have been tried (three VMs, at least one agent call each) ...
    await waitFor('a probe of each VM', () => t.fake.callCount('QEMU_DOMAIN_AGENT_COMMAND') >= 3);
    // ... and the silent agent does not hold up stats.
    for (const uuid of [none, silent, blocked]) {
      expect((await stats(client, uuid)).memoryDevices[0]?.guest).toEqual({ online: false, zone: 'unknown' });
    }
  });

  it('a plug is probed, and a zone change is noticed by the periodic probe and notified', async () => {
    const uuid = vm({ mode: 'answer' }, [['ua-m', 128]]);
    const client = await daemon('[guest]\nprobe_interval = 0.2\n');
    await probed(client, uuid, { 'ua-m': 'movable' });
    await client.call('VM.hotplugMemory', {
      vmID: uuid,
      params: { vmId: uuid, memory: { size: 128, node: 0, alias: 'ua-new' } },
    });
    await probed(client, uuid, { 'ua-m': 'movable', 'ua-new': 'movable' });
    const mark = client.notifications.length;
    t.fake.setAgent(uuid, { mode: 'answer', zones: { 'ua-new': 'Normal' } });
    const n = await client.waitForNotification(
      (x) =>
        client.notifications.indexOf(x) >= mark &&
        x.method === `|virt|VM_status|${uuid}` &&
        zones(vmStatusStats(x, uuid))['ua-new'] === 'normal',
    );
    expect(zones(vmStatusStats(n, uuid))).toEqual({ 'ua-m': 'movable', 'ua-new': 'normal' });
  });
});

describe('VM.hotunplugMemory pre-flight', () => {
  it('a DIMM in ZONE_NORMAL: 85 not-movable at once, the VM untouched; force tries it', async () => {
    const uuid = vm({ mode: 'answer', zones: { 'ua-n': 'Normal' } }, [['ua-n', 128]]);
    const client = await daemon();
    await probed(client, uuid, { 'ua-n': 'normal' });
    const detaches = t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS');
    const writes = t.fake.callCount('DOMAIN_SET_METADATA');
    const e = await expectRpcError(client.call('VM.hotunplugMemory', unplug(uuid, 'ua-n')));
    expect(e.code).toBe(85);
    expect(e.error.data).toMatchObject({ reason: 'not-movable', alias: 'ua-n', zone: 'normal' });
    expect(t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS')).toBe(detaches);
    expect(t.fake.callCount('DOMAIN_SET_METADATA')).toBe(writes);
    expect((await stats(client, uuid)).memoryDevices[0]?.state).toBe('plugged');
    // The fake guest releases whatever it is asked to: force shows the request went through.
    await expect(
      client.call('VM.hotunplugMemory', unplug(uuid, 'ua-n', 128, { force: true })),
    ).resolves.toMatchObject({
      status: 'removed',
      memSize: 1024,
    });
  });

  it('decides on a fresh answer, not the cached one', async () => {
    const uuid = vm({ mode: 'answer' }, [['ua-x', 256]]);
    const client = await daemon('[guest]\nprobe_interval = 0\n');
    await probed(client, uuid, { 'ua-x': 'movable' });
    // Onlined otherwise since (no periodic probe: the cache still says movable).
    t.fake.setAgent(uuid, { mode: 'answer', zones: { 'ua-x': ['Movable', 'Normal'] } });
    const detaches = t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS');
    expect(zones(await stats(client, uuid))).toEqual({ 'ua-x': 'movable' });
    const e = await expectRpcError(client.call('VM.hotunplugMemory', unplug(uuid, 'ua-x', 256)));
    expect(e.error.data).toMatchObject({ reason: 'not-movable', zone: 'mixed' });
    expect(t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS')).toBe(detaches);
    // The fresh answer is the cache's now.
    expect(zones(await stats(client, uuid))).toEqual({ 'ua-x': 'mixed' });
  });

  it('unknown (silent agent, blocked files, no agent): unplugged as before', async () => {
    const silent = vm({ mode: 'silent' }, [['ua-s', 128]]);
    const blocked = vm({ mode: 'files-blocked' }, [['ua-b', 128]]);
    const none = vm(undefined, [['ua-z', 128]]);
    const client = await daemon();
    for (const [uuid, alias] of [
      [silent, 'ua-s'],
      [blocked, 'ua-b'],
      [none, 'ua-z'],
    ] as const) {
      await expect(client.call('VM.hotunplugMemory', unplug(uuid, alias))).resolves.toMatchObject({
        status: 'removed',
        alias,
      });
    }
  });
});

describe('a silent agent', () => {
  it('is waited for once; later pre-flights go on without it until a background probe is answered', async () => {
    const uuid = vm({ mode: 'silent' }, [
      ['ua-a', 128],
      ['ua-b', 128],
      ['ua-c', 128],
    ]);
    const client = await daemon('[guest]\nprobe_interval = 0\nprobe_timeout = 2\n');
    // The first pre-flight waits for the agent and finds it silent.
    await expect(client.call('VM.hotunplugMemory', unplug(uuid, 'ua-a'))).resolves.toMatchObject({
      status: 'removed',
    });
    // The agent answers again, and would say ZONE_NORMAL: a pre-flight that
    // asked would refuse. This one does not wait for a silent agent.
    t.fake.setAgent(uuid, { mode: 'answer', zones: { 'ua-b': 'Normal', 'ua-c': 'Normal' } });
    await expect(client.call('VM.hotunplugMemory', unplug(uuid, 'ua-b'))).resolves.toMatchObject({
      status: 'removed',
    });
    // The unplug's final log line lists its steps (the log is read as it comes).
    const done = await fd?.daemon.waitForLog((l) => l.alias === 'ua-b' && l.msg === 'removed');
    expect(Object.keys((done?.steps ?? {}) as object)).toContain(
      'guest agent silent at its last probe: not waited for',
    );
    // The background probe it asked for gets the answer; from then on pre-flights ask again.
    await probed(client, uuid, { 'ua-c': 'normal' });
    const e = await expectRpcError(client.call('VM.hotunplugMemory', unplug(uuid, 'ua-c')));
    expect(e.error.data).toMatchObject({ reason: 'not-movable', alias: 'ua-c' });
  });
});

describe('VM.setMemory with guest zones', () => {
  it('prefers movable DIMMs, skips ZONE_NORMAL ones and lists them', async () => {
    const uuid = vm({ mode: 'answer', zones: { 'ua-n': 'Normal' } }, [
      ['ua-n', 256],
      ['ua-m1', 256],
      ['ua-m2', 128],
    ]);
    const client = await daemon();
    const r = await client.call<SetMemoryResult>('VM.setMemory', { vmID: uuid, memory: (1664 - 256) * MiB });
    expect(r).toMatchObject({
      memSize: 1408,
      unplugged: [{ alias: 'ua-m1', size: 256 }],
      failed: [],
      skipped: [{ alias: 'ua-n', size: 256, reason: 'not-movable' }],
    });
    expect(t.fake.getDomainState(uuid)?.liveDimms.sort()).toEqual(['ua-m2', 'ua-n']);
  });

  it('only ZONE_NORMAL DIMMs fit: 85 not-movable naming them, nothing changed; force (and REST ?force=true) unplug', async () => {
    const uuid = vm({ mode: 'answer', zones: { 'ua-n1': 'Normal', 'ua-n2': 'Normal' } }, [
      ['ua-n1', 128],
      ['ua-n2', 128],
    ]);
    const client = await daemon();
    const detaches = t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS');
    const dry = await expectRpcError(
      client.call('VM.setMemory', { vmID: uuid, memory: 1152 * MiB, dryRun: true }),
    );
    expect(dry.error.data).toMatchObject({ reason: 'not-movable' });
    const e = await expectRpcError(client.call('VM.setMemory', { vmID: uuid, memory: 1152 * MiB }));
    expect(e.code).toBe(85);
    expect(e.error.data).toMatchObject({
      reason: 'not-movable',
      decrement: 128,
      skipped: [
        { alias: 'ua-n1', size: 128, reason: 'not-movable' },
        { alias: 'ua-n2', size: 128, reason: 'not-movable' },
      ],
    });
    expect(t.fake.callCount('DOMAIN_DETACH_DEVICE_FLAGS')).toBe(detaches);
    // REST: the same refusal (409), then force.
    const url = `${fd!.daemon.url.replace(/^ws/, 'http').replace(/\/jsonrpc.*$/, '')}/api/vms/${uuid}`;
    const put = (q: string) =>
      fetch(`${url}${q}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/xml' },
        body: `<vm><memory>${1152 * MiB}</memory></vm>`,
      });
    const refused = await put('');
    expect(refused.status).toBe(409);
    expect(await refused.text()).toMatch(/ZONE_NORMAL/);
    expect((await put('?force=maybe')).status).toBe(400);
    const forced = await put('?force=true');
    expect(forced.status).toBe(200);
    expect(await forced.text()).toContain(`<memory>${1152 * MiB}</memory>`);
    const r = await client.call<SetMemoryResult>('VM.setMemory', {
      vmID: uuid,
      memory: 1024 * MiB,
      force: true,
    });
    expect(r).toMatchObject({ memSize: 1024, skipped: [], failed: [] });
  });
});
