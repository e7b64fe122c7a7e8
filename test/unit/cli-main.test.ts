// vmhost-client end to end against the daemon's real RpcServer (its
// transport, validation with the API's own params schemas, its notifications)
// with stand-in handlers: connection, VM name resolution, exit codes, --json,
// progress and events. The real-daemon tests live in test/integration/cli.test.ts.
import { EventEmitter, once } from 'node:events';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/api/contract.js';
import { defineMethod } from '../../src/api/define-method.js';
import { memoryOf, toHotplugSpec, toHotunplugSpec } from '../../src/api/memory-device.js';
import {
  AllVmStats,
  GetVmListParams,
  HotplugParams,
  HotunplugParams,
  NoParams,
  ResizeMemoryDeviceParams,
  ResizeResult,
  SetMemoryParams,
  SetMemoryResult,
  UnplugResult,
  VmIdParams,
  VmList,
  type VmStatsDevice,
  VmStatsList,
  VmStats as VmStatsSchema,
} from '../../src/api/schemas.js';
import { main } from '../../src/cli/main.js';
import { RpcError } from '../../src/rpc/errors.js';
import { RpcServer } from '../../src/rpc/server.js';

const VM = '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';
type Dimm = VmStatsDevice;
let dimms: Dimm[] = [];
let calls: { method: string; params: Record<string, unknown> }[] = [];

function stats() {
  return {
    vmId: VM,
    vmName: 'demo',
    status: 'Up' as const,
    memSize: 512 + dimms.reduce((a, d) => a + d.size, 0),
    memGuaranteedSize: 512,
    hash: String(dimms.length),
    balloonActive: false,
    memoryDevices: dimms,
  };
}

let server: RpcServer;
/** Emits each stub method's name as it is called. */
const callEvents = new EventEmitter();
let url: string;

/** As the daemon says of DIMMs the guest holds in ZONE_NORMAL (here: by name). */
const skippedOf = (force: boolean | undefined) =>
  force
    ? []
    : dimms
        .filter((d) => d.alias.startsWith('ua-normal'))
        .map((d) => ({ alias: d.alias, size: d.size, reason: 'not-movable' as const }));
const fail = (code: number, message: string, data?: Record<string, unknown>) =>
  new RpcError(code, message, data);

/** The daemon's own schemas and transport; only the handlers are stand-ins. */
function stubMethods() {
  const record = (method: string, params: unknown) => {
    calls.push({ method, params: params as Record<string, unknown> });
    callEvents.emit(method);
  };
  const knownVm = (vmID: string) => {
    if (vmID !== VM) throw fail(ErrorCode.NO_SUCH_VM, 'no such VM', { reason: 'no-such-vm' });
  };
  return [
    defineMethod({
      name: 'Host.getVMList',
      summary: 'stub',
      params: GetVmListParams,
      result: VmList,
      handler: async (p) => {
        record('Host.getVMList', p);
        if (p.fullStatus !== true) return [{ vmId: VM, status: 'Up' as const }];
        const s = stats();
        return [
          { vmId: VM, vmName: 'demo', status: 'Up' as const, memSize: s.memSize, memGuaranteedSize: 512 },
        ];
      },
    }),
    defineMethod({
      name: 'Host.getAllVmStats',
      summary: 'stub',
      params: NoParams,
      result: AllVmStats,
      handler: async (p) => {
        record('Host.getAllVmStats', p);
        return [stats()];
      },
    }),
    defineMethod({
      name: 'VM.getStats',
      summary: 'stub',
      params: VmIdParams,
      result: VmStatsList,
      handler: async (p) => {
        record('VM.getStats', p);
        knownVm(p.vmID);
        return [stats()];
      },
    }),
    defineMethod({
      name: 'VM.hotplugMemory',
      summary: 'stub',
      params: HotplugParams,
      result: VmStatsSchema,
      handler: async (p) => {
        record('VM.hotplugMemory', p);
        knownVm(p.vmID);
        const m = toHotplugSpec(memoryOf(p.params));
        dimms.push({
          model: 'dimm',
          alias: m.alias ?? `ua-${dimms.length}`,
          size: m.size,
          node: m.node,
          slot: dimms.length,
          base: '0x100000000',
          state: 'plugged',
        });
        return stats();
      },
    }),
    defineMethod({
      name: 'VM.hotunplugMemory',
      summary: 'stub',
      params: HotunplugParams,
      result: UnplugResult,
      handler: async (p) => {
        record('VM.hotunplugMemory', p);
        knownVm(p.vmID);
        const { alias } = toHotunplugSpec(memoryOf(p.params));
        if (alias === 'ua-reject') {
          throw fail(ErrorCode.HOTUNPLUG_FAILED, 'unplug of device was rejected by the guest', {
            reason: 'guest-rejected',
          });
        }
        if (alias === 'ua-normal' && p.force !== true) {
          throw fail(ErrorCode.HOTUNPLUG_FAILED, 'the guest holds DIMM ua-normal in ZONE_NORMAL', {
            reason: 'not-movable',
            alias,
            zone: 'normal',
          });
        }
        dimms = dimms.filter((d) => d.alias !== alias);
        server.notify(`|virt|device_removed|${VM}`, { alias, memSize: stats().memSize, late: false });
        return { status: 'removed' as const, alias, memSize: stats().memSize, memGuaranteedSize: 512 };
      },
    }),
    defineMethod({
      name: 'VM.resizeMemoryDevice',
      summary: 'stub',
      params: ResizeMemoryDeviceParams,
      result: ResizeResult,
      handler: async (p) => {
        record('VM.resizeMemoryDevice', p);
        knownVm(p.vmID);
        const dev = dimms.find((d) => d.alias === p.alias);
        if (!dev) throw fail(ErrorCode.HOTUNPLUG_FAILED, 'no such device', { reason: 'device-not-found' });
        if (p.requested === 2) {
          throw fail(
            ErrorCode.HOTUNPLUG_FAILED,
            'virtio-mem ua-vm stopped moving at 64 MiB, requested 2 MiB',
            {
              reason: 'stalled',
              alias: p.alias,
              requested: 2,
              current: 64,
              requestedNow: 64,
              onFailure: 'settle',
            },
          );
        }
        for (const step of [p.requested / 2, p.requested]) {
          server.notify(`|virt|memory_device_size_changed|${VM}`, {
            alias: p.alias,
            requested: p.requested,
            current: step,
          });
        }
        dev.requested = p.requested;
        dev.current = p.requested;
        return {
          alias: p.alias,
          requested: p.requested,
          current: p.requested,
          memSize: 512 + p.requested,
          nextRun: { updated: false, requested: p.requested },
        };
      },
    }),
    defineMethod({
      name: 'VM.setMemory',
      summary: 'stub',
      params: SetMemoryParams,
      result: SetMemoryResult,
      handler: async (p) => {
        record('VM.setMemory', p);
        knownVm(p.vmID);
        // As the daemon: the floor is base memory (512) plus boot-time DIMMs (none here).
        const requested = Math.floor(p.memory / 2 ** 20);
        if (requested < 512) {
          throw fail(ErrorCode.HOTUNPLUG_FAILED, `${requested} MiB is below this VM's minimum of 512 MiB`, {
            reason: 'below-minimum',
            floor: 512,
            requested,
          });
        }
        if (p.dryRun) {
          const hot = dimms.reduce((a, d) => a + d.size, 0);
          let total = 0;
          const unplugged: { alias: string; size: number }[] = [];
          for (const d of [...dimms].sort((a, b) => b.size - a.size)) {
            if (total + d.size > stats().memSize - requested) continue;
            total += d.size;
            unplugged.push({ alias: d.alias, size: d.size });
          }
          return {
            memSize: stats().memSize - total,
            memGuaranteedSize: 512,
            unplugged,
            resized: [],
            failed: [],
            skipped: skippedOf(p.force),
            nextRun: { updated: false, memory: requested, guaranteed: 512 },
            dryRun: true as const,
            floor: 512,
            hotplugged: hot,
          };
        }
        return {
          memSize: 640,
          memGuaranteedSize: 512,
          unplugged: [{ alias: 'ua-0', size: 128 }],
          resized: [],
          failed: [{ alias: 'ua-reject', reason: 'guest-rejected' }],
          skipped: skippedOf(p.force),
          nextRun: { updated: true, memory: 640, guaranteed: 512 },
        };
      },
    }),
  ];
}

beforeAll(async () => {
  server = await RpcServer.start({
    host: '127.0.0.1',
    port: 0,
    methods: stubMethods(),
    logger: pino({ level: 'silent' }),
    apiVersion: '1.0-test',
    serverName: 'vmhostd-cli-test',
  });
  url = server.url();
});

afterAll(() => server.close({ drainMs: 100 }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  return runWith({}, ...argv);
}

/** As run, with a terminal's confirm(): answers `answer` and records the questions. */
async function runWith(
  tty: { answer?: boolean; asked?: string[] },
  ...argv: string[]
): Promise<{ code: number; out: string; err: string }> {
  const out = { text: '', isTTY: false, write: (s: string) => (out.text += s) };
  const err = { text: '', isTTY: false, write: (s: string) => (err.text += s) };
  const confirm =
    tty.answer === undefined
      ? {}
      : {
          confirm: async (q: string) => {
            tty.asked?.push(q);
            return tty.answer === true;
          },
        };
  const code = await main(['--url', url, ...argv], {}, { stdout: out, stderr: err, ...confirm });
  return { code, out: out.text, err: err.text };
}

describe('vmhost-client against the real RpcServer with stub methods', () => {
  it('vm list and vm show by name', async () => {
    dimms = [];
    const list = await run('vm', 'list');
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/^demo\s+0b1c2d3e-\S+\s+Up\s+512 MiB\s+512 MiB\s+0$/m);
    const show = await run('vm', 'show', 'demo');
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/No memory devices/);
  });

  it('plug resolves the name, sends MiB and node, reports the new DIMM', async () => {
    dimms = [];
    calls = [];
    const r = await run('vm', 'plug', 'demo', '256MiB', '--node', '0');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^Plugged DIMM ua-0 \(256 MiB, node 0, slot 0\) into demo: memory 512 MiB -> 768 MiB/,
    );
    const call = calls.find((c) => c.method === 'VM.hotplugMemory');
    expect(call?.params).toEqual({ vmID: VM, params: { vmId: VM, memory: { size: 256, node: 0 } } });
  });

  it('unplug sends size/node/alias from the live stats and prints plain progress', async () => {
    calls = [];
    const r = await run('vm', 'unplug', VM, 'ua-0', '--timeout', '8');
    expect(r.code).toBe(0);
    expect(r.err).toBe('waiting for the guest to release DIMM ua-0 (256 MiB) of demo: 0 s, timeout 8 s\n');
    expect(r.out).toMatch(/^Removed DIMM ua-0 \(256 MiB\) from demo in \d+\.\d s: memory 768 MiB -> 512 MiB/);
    expect(calls.find((c) => c.method === 'VM.hotunplugMemory')?.params).toEqual({
      vmID: VM,
      params: { vmId: VM, memory: { size: 256, node: 0, alias: 'ua-0' } },
      timeout: 8,
    });
  });

  it('a rejected unplug exits 1 and says how to make memory movable', async () => {
    dimms = [
      {
        model: 'dimm',
        alias: 'ua-reject',
        size: 128,
        node: 0,
        slot: 0,
        base: '0x100000000',
        state: 'plugged',
      },
    ];
    const r = await run('vm', 'unplug', 'demo', 'ua-reject');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/hot unplug failed: unplug of device was rejected by the guest \(guest-rejected\)/);
    expect(r.err).toMatch(/memhp_default_state=online_movable/);
    const j = await run('--json', 'vm', 'unplug', 'demo', 'ua-reject');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toEqual({
      error: {
        kind: 'rpc',
        code: 85,
        message: 'unplug of device was rejected by the guest',
        data: { reason: 'guest-rejected' },
      },
    });
  });

  it('unknown VM name or alias exits 1 with what exists', async () => {
    const noVm = await run('vm', 'show', 'nope');
    expect(noVm.code).toBe(1);
    expect(noVm.err).toMatch(/no VM named "nope".*\n.*known VMs: demo/);
    const noDimm = await run('vm', 'unplug', 'demo', 'ua-zzz');
    expect(noDimm.code).toBe(1);
    expect(noDimm.err).toMatch(/demo has no DIMM "ua-zzz"\n.*its DIMMs: ua-reject/);
    const noUuid = await run('vm', 'show', '99999999-2222-3333-4444-555555555555');
    expect(noUuid.code).toBe(1);
    expect(noUuid.err).toMatch(/no such VM/);
  });

  const dimm = (alias: string, size: number, slot: number): Dimm => ({
    model: 'dimm',
    alias,
    size,
    node: 0,
    slot,
    base: `0x${(0x100000000 + slot * 0x10000000).toString(16)}`,
    state: 'plugged',
  });
  const realSetMemoryCalls = () =>
    calls.filter((c) => c.method === 'VM.setMemory' && c.params.dryRun !== true);

  it('a DIMM the guest holds in ZONE_NORMAL: not-movable with a hint naming --force; --force sends force', async () => {
    dimms = [
      {
        model: 'dimm',
        alias: 'ua-normal',
        size: 128,
        node: 0,
        slot: 0,
        base: '0x100000000',
        state: 'plugged',
      },
    ];
    const r = await run('vm', 'unplug', 'demo', 'ua-normal');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ZONE_NORMAL.*\(not-movable\)/);
    expect(r.err).toMatch(/hint: .*valid_zones.*--force tries anyway/);
    calls = [];
    const f = await run('vm', 'unplug', 'demo', 'ua-normal', '--force');
    expect(f.code).toBe(0);
    expect(calls.find((c) => c.method === 'VM.hotunplugMemory')?.params).toMatchObject({ force: true });
  });

  it('set-memory --dry-run shows what would be unplugged and changes nothing', async () => {
    dimms = [dimm('ua-a', 256, 0), dimm('ua-b', 128, 1)];
    calls = [];
    const r = await run('vm', 'set-memory', 'demo', '640MiB', '--dry-run');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/would set memory 896 MiB -> 640 MiB \(dry run, nothing changed\)/);
    expect(r.out).toMatch(/would unplug: ua-a \(256 MiB\)/);
    expect(r.out).toMatch(/can never go below 512 MiB/);
    expect(realSetMemoryCalls()).toHaveLength(0);
    const j = await run('--json', 'vm', 'set-memory', 'demo', '640MiB', '--dry-run');
    expect(JSON.parse(j.out)).toMatchObject({
      dryRun: true,
      unplugged: [{ alias: 'ua-a', size: 256 }],
      floor: 512,
    });
    expect(realSetMemoryCalls()).toHaveLength(0);
  });

  it('a typo below the minimum (1.5MiB for 1.5GiB) is refused naming the floor, with no progress line', async () => {
    dimms = [dimm('ua-a', 256, 0), dimm('ua-b', 128, 1)];
    calls = [];
    const r = await run('vm', 'set-memory', 'demo', '1.5MiB');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/below this VM's minimum of 512 MiB/);
    expect(r.err).not.toMatch(/waiting for the guest/);
    expect(realSetMemoryCalls()).toHaveLength(0);
  });

  it('a request refused at validation prints no progress line; --json prints the error', async () => {
    calls = [];
    const r = await run('--json', 'vm', 'set-memory', 'demo', '99999GiB');
    expect(r.code).toBe(1);
    expect(r.err).not.toMatch(/waiting for the guest/);
    expect(JSON.parse(r.out)).toMatchObject({ error: { kind: 'rpc', code: -32602 } });
    expect(realSetMemoryCalls()).toHaveLength(0);
  });

  it('on a terminal, asks before removing more than half the hot-plugged memory; no means nothing changes', async () => {
    dimms = [dimm('ua-a', 256, 0), dimm('ua-b', 128, 1)];
    calls = [];
    const asked: string[] = [];
    const no = await runWith({ answer: false, asked }, 'vm', 'set-memory', 'demo', '512MiB');
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatch(/Remove 384 MiB of the 384 MiB hot-plugged memory of demo/);
    expect(no.code).toBe(1);
    expect(no.err).toMatch(/cancelled: nothing changed/);
    expect(realSetMemoryCalls()).toHaveLength(0);
    const yes = await runWith({ answer: true, asked }, 'vm', 'set-memory', 'demo', '512MiB');
    expect(asked).toHaveLength(2);
    expect(realSetMemoryCalls()).toHaveLength(1);
    expect(yes.err).toMatch(/waiting for the guest to release DIMMs/);
    // --yes skips the question; half or less is not asked about.
    await runWith({ answer: false, asked }, 'vm', 'set-memory', 'demo', '512MiB', '--yes');
    await runWith({ answer: false, asked }, 'vm', 'set-memory', 'demo', '768MiB');
    expect(asked).toHaveLength(2);
    expect(realSetMemoryCalls()).toHaveLength(3);
  });

  it('set-memory says which DIMMs it skipped as not movable; --force sends force', async () => {
    dimms = [dimm('ua-0', 128, 0), dimm('ua-normal', 128, 1)];
    const dry = await run('vm', 'set-memory', 'demo', '640MiB', '--dry-run');
    expect(dry.out).toMatch(
      /would skip \(the guest holds them in ZONE_NORMAL; --force to try\): ua-normal \(128 MiB\)/,
    );
    const r = await run('vm', 'set-memory', 'demo', '640MiB', '--yes');
    expect(r.out).toMatch(
      /\n {2}skipped \(the guest holds them in ZONE_NORMAL; --force to try\): ua-normal \(128 MiB\)/,
    );
    calls = [];
    const f = await run('vm', 'set-memory', 'demo', '640MiB', '--yes', '--force');
    expect(f.out).not.toMatch(/skipped/);
    expect(realSetMemoryCalls().at(-1)?.params).toMatchObject({ force: true });
  });

  it('set-memory sends bytes and exits 1 when a DIMM could not be removed', async () => {
    dimms = [dimm('ua-reject', 128, 0)];
    calls = [];
    const r = await run('vm', 'set-memory', 'demo', '640MiB', '--guaranteed', '512MiB');
    expect(calls.filter((c) => c.method === 'VM.setMemory').at(-1)?.params).toEqual({
      vmID: VM,
      memory: 640 * 2 ** 20,
      guaranteed: 512 * 2 ** 20,
    });
    expect(r.out).toMatch(
      /demo: memory 640 MiB -> 640 MiB, guaranteed 512 MiB\n {2}unplugged: ua-0 \(128 MiB\)/,
    );
    expect(r.err).toMatch(/could not remove ua-reject: guest-rejected/);
    expect(r.code).toBe(1);
  });

  it('--json output parses; raw calls print the result', async () => {
    const j = await run('--json', 'vm', 'list');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.out)[0].vmName).toBe('demo');
    const raw = await run('VM', 'getStats', `vmID=${VM}`);
    expect(raw.code).toBe(0);
    expect(JSON.parse(raw.out)[0].vmId).toBe(VM);
    const unknown = await run('Host', 'frobnicate');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/method not found: Host.frobnicate/);
  });

  it('events --count prints one line per notification and stops', async () => {
    dimms = [
      { model: 'dimm', alias: 'ua-9', size: 128, node: 0, slot: 0, base: '0x100000000', state: 'plugged' },
    ];
    calls = [];
    const followerListening = once(callEvents, 'Host.getVMList');
    const pending = run('events', '--count', '1');
    // The follower listens before its first call: once that call arrives, a second client triggers a notification.
    await followerListening;
    const other = await run('vm', 'unplug', 'demo', 'ua-9');
    expect(other.code).toBe(0);
    const r = await pending;
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^\S+Z {2}device_removed {9}demo \(0b1c2d3e-\S+\) {2}alias=ua-9 memory=512MiB late=false\n$/,
    );
  });

  it('cannot connect: exit 3, one line', async () => {
    const out = { text: '', write: (s: string) => (out.text += s) };
    const err = { text: '', write: (s: string) => (err.text += s) };
    const code = await main(
      ['--url', 'ws://127.0.0.1:1/jsonrpc', 'vm', 'list'],
      {},
      { stdout: out, stderr: err },
    );
    expect(code).toBe(3);
    expect(err.text).toBe(
      'vmhost-client: cannot connect to ws://127.0.0.1:1/jsonrpc: connection refused (is vmhostd running? systemctl status vmhostd)\n',
    );
  });

  it('usage errors exit 2 before connecting', async () => {
    const r = await run('vm', 'plug', 'demo', '256MB');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown unit "MB"/);
  });
});

describe('vm resize and virtio-mem in vm show', () => {
  const vmem = (): Dimm => ({
    model: 'virtio-mem',
    alias: 'ua-vm',
    size: 1024,
    node: 0,
    slot: -1,
    base: '',
    state: 'plugged',
    requested: 0,
    current: 0,
    block: 2,
    address: '0000:00:02.0',
  });

  it('vm show lists virtio-mem devices with maximum, requested, current and block', async () => {
    dimms = [vmem()];
    const show = await run('vm', 'show', 'demo');
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/VIRTIO-MEM\s+MAX\s+REQUESTED\s+CURRENT\s+BLOCK\s+NODE\s+STATE/);
    expect(show.out).toMatch(/ua-vm\s+1024 MiB\s+0 MiB\s+0 MiB\s+2 MiB\s+0\s+plugged/);
    expect(show.out).not.toMatch(/No memory devices/);
  });

  it('vm resize sends MiB, prints progress from the size notifications, and the result', async () => {
    dimms = [vmem()];
    calls = [];
    const r = await run('vm', 'resize', 'demo', 'ua-vm', '512MiB', '--timeout', '30', '--keep');
    expect(r.code).toBe(0);
    expect(calls.find((c) => c.method === 'VM.resizeMemoryDevice')?.params).toEqual({
      vmID: VM,
      alias: 'ua-vm',
      requested: 512,
      timeout: 30,
      onFailure: 'keep',
    });
    expect(r.err).toMatch(/resizing ua-vm of demo: 0 MiB -> 512 MiB/);
    expect(r.out).toMatch(/^Resized ua-vm of demo 0 MiB -> 512 MiB in [\d.]+ s: memory 1536 MiB -> 1024 MiB/);
    expect(r.out).toMatch(/next run: unchanged, ua-vm at 512 MiB/);
  });

  it('on a TTY, vm resize draws a live bar with current -> requested, MiB/s and elapsed time', async () => {
    dimms = [vmem()];
    const out = { text: '', isTTY: false, write: (t: string) => (out.text += t) };
    const err = { text: '', isTTY: true, write: (t: string) => (err.text += t) };
    const code = await main(
      ['--url', url, 'vm', 'resize', 'demo', 'ua-vm', '512'],
      {},
      { stdout: out, stderr: err },
    );
    expect(code).toBe(0);
    // Each redraw clears the line (CR, ESC [2K) and writes it again.
    const drawn = err.text.replaceAll('\x1b[2K', '<clear>');
    expect(drawn).toMatch(
      /\r<clear>. resizing ua-vm of demo: \d+ MiB -> 512 MiB \[[#.]{20}\] \d+ MiB\/s, \d+ s/,
    );
    // The line is cleared when the call ends; the result goes to stdout.
    expect(drawn.endsWith('\r<clear>')).toBe(true);
    expect(out.text).toMatch(/^Resized ua-vm of demo/);
  });

  it('a stalled resize exits 1 with the current reached and a hint', async () => {
    dimms = [vmem()];
    const r = await run('vm', 'resize', 'demo', 'ua-vm', '2');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/stopped moving at 64 MiB/);
    expect(r.err).toMatch(/hint: .*unmovable/);
    const unknown = await run('vm', 'resize', 'demo', 'ua-nope', '2');
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/no virtio-mem device "ua-nope".*\n.*ua-vm/);
  });
});
