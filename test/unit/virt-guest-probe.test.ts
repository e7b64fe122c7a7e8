// The guest probe's scheduling (guest-probe.ts): when a VM's guest is asked
// about its DIMMs, that answers land in order, and the host-wide cap.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DomainRef, LibvirtApi } from '../../src/libvirt/types.js';
import type { GuestDimmView, ProbedDimm } from '../../src/virt/guest-memory.js';
import {
  GuestProber,
  type GuestViews,
  holdsKernelMemory,
  type ProbeTarget,
  probeDeadlineMs,
} from '../../src/virt/guest-probe.js';

const ref: DomainRef = { name: 'vm', uuid: '00000000-0000-0000-0000-000000000001', id: 1 };

/** An agent whose answers the test releases one by one; zone per block index. */
function agentApi(zones: Map<number, string>) {
  const pending: (() => void)[] = [];
  let hold = false;
  let calls = 0;
  const api = {
    async qemuAgentCommand(_d: DomainRef, cmd: string): Promise<string | null> {
      calls++;
      if (hold) await new Promise<void>((r) => pending.push(r));
      const { execute, arguments: a } = JSON.parse(cmd) as { execute: string; arguments?: { path?: string } };
      if (execute === 'guest-get-memory-blocks') {
        return JSON.stringify({
          return: [...zones.keys()].map((i) => ({ 'phys-index': i, online: zones.get(i) !== 'offline' })),
        });
      }
      if (execute === 'guest-file-open') return JSON.stringify({ return: a?.path?.length ?? 1 });
      if (execute === 'guest-file-read') {
        // The handle is the path's length: enough to tell the files apart here.
        return JSON.stringify({ return: { 'buf-b64': '' } });
      }
      return JSON.stringify({ return: {} });
    },
  };
  return {
    api: api as unknown as LibvirtApi,
    get calls() {
      return calls;
    },
    hold(on: boolean) {
      hold = on;
    },
    release() {
      for (const r of pending.splice(0)) r();
    },
    get waiting() {
      return pending.length;
    },
  };
}

/** A prober whose probe the test controls directly (`silent`: its answers say the agent did not answer). */
function scripted(answer: (dimms: readonly ProbedDimm[]) => Promise<GuestViews>, intervalMs = 0) {
  const prober = new GuestProber({} as LibvirtApi, { intervalMs, deadlineMs: 1000, concurrency: 4 });
  const agent = { silent: false };
  const probe = vi
    .spyOn(prober, 'probe')
    .mockImplementation(async (_r, dimms) => ({ views: new Map(await answer(dimms)), silent: agent.silent }));
  return { prober, probe, agent };
}

function target(dimms: () => ProbedDimm[]) {
  const applied: GuestViews[] = [];
  const t: ProbeTarget = {
    subject: () => ({ ref, dimms: dimms(), run: 1 }),
    apply: (_d, v) => applied.push(v),
  };
  return { t, applied };
}

const view = (zone: GuestDimmView['zone']): GuestDimmView => ({ online: zone !== 'offline', zone });
const d1: ProbedDimm = { alias: 'ua-1', base: '0x100000000', size: 128 };
const d2: ProbedDimm = { alias: 'ua-2', base: '0x108000000', size: 128 };

afterEach(() => {
  vi.useRealTimers();
});

describe('guest probe loop', () => {
  it('probes when the DIMM set changes, not when it stays the same', async () => {
    let dimms = [d1];
    const { prober, probe } = scripted(async () => new Map([['ua-1', view('movable')]]));
    const { t, applied } = target(() => dimms);
    const loop = prober.loop(t);
    loop.changed();
    loop.changed();
    await vi.waitFor(() => expect(applied).toHaveLength(1));
    expect(probe).toHaveBeenCalledTimes(1);
    dimms = [d1, d2];
    loop.changed();
    await vi.waitFor(() => expect(applied).toHaveLength(2));
    expect(probe).toHaveBeenCalledTimes(2);
    loop.stop();
  });

  it('no DIMMs: no probe', async () => {
    const { prober, probe } = scripted(async () => new Map());
    const { t } = target(() => []);
    const loop = prober.loop(t);
    loop.changed();
    loop.kick();
    await loop.now([]);
    expect(probe).not.toHaveBeenCalled();
  });

  it('one background probe at a time; a change during one asks once more after it', async () => {
    let open!: () => void;
    let dimms = [d1];
    const { prober, probe } = scripted(
      (ds) =>
        new Promise((r) => {
          open = () => r(new Map(ds.map((d) => [d.alias, view('movable')])));
        }),
    );
    const { t, applied } = target(() => dimms);
    const loop = prober.loop(t);
    loop.changed();
    dimms = [d1, d2];
    loop.changed();
    loop.kick();
    expect(probe).toHaveBeenCalledTimes(1);
    open();
    await vi.waitFor(() => expect(probe).toHaveBeenCalledTimes(2));
    open();
    await vi.waitFor(() => expect(applied).toHaveLength(2));
    expect([...applied[1]!.keys()]).toEqual(['ua-1', 'ua-2']);
    loop.stop();
  });

  it('an older answer that comes after a newer one is not applied', async () => {
    const opens: ((v: GuestViews) => void)[] = [];
    const { prober } = scripted(() => new Promise((r) => opens.push(r)));
    const { t, applied } = target(() => [d1]);
    const loop = prober.loop(t);
    loop.changed(); // background probe, answered last
    const fresh = loop.now([d1]); // the pre-flight's, answered first
    await vi.waitFor(() => expect(opens).toHaveLength(2));
    opens[1]!(new Map([['ua-1', view('normal')]]));
    expect((await fresh).get('ua-1')?.zone).toBe('normal');
    opens[0]!(new Map([['ua-1', view('movable')]]));
    await vi.waitFor(() => expect(applied).toHaveLength(1));
    await new Promise((r) => setImmediate(r));
    expect(applied).toHaveLength(1);
    expect(applied[0]!.get('ua-1')?.zone).toBe('normal');
    loop.stop();
  });

  it('a silent agent is not waited for by a pre-flight until a background probe gets an answer', async () => {
    let opens: ((v: GuestViews) => void)[] = [];
    const { prober, probe, agent } = scripted(() => new Promise((r) => opens.push(r)));
    const { t, applied } = target(() => [d1]);
    const loop = prober.loop(t);
    agent.silent = true;
    const first = loop.now([d1]);
    opens[0]!(new Map());
    await first;
    expect(loop.agentSilent).toBe(true);
    // The next pre-flight answers at once, with nothing, and a background probe asks instead.
    opens = [];
    expect(await loop.now([d1])).toEqual(new Map());
    expect(probe).toHaveBeenCalledTimes(2);
    agent.silent = false;
    opens[0]!(new Map([['ua-1', view('normal')]]));
    await vi.waitFor(() => expect(applied).toHaveLength(2));
    expect(loop.agentSilent).toBe(false);
    // Answering again: pre-flights ask afresh.
    opens = [];
    const fresh = loop.now([d1]);
    await vi.waitFor(() => expect(opens).toHaveLength(1));
    opens[0]!(new Map([['ua-1', view('movable')]]));
    expect((await fresh).get('ua-1')?.zone).toBe('movable');
    loop.stop();
  });

  it('asks again every interval while the VM has DIMMs; stop ends it', async () => {
    vi.useFakeTimers();
    const { prober, probe } = scripted(async () => new Map(), 60_000);
    const { t } = target(() => [d1]);
    const loop = prober.loop(t);
    loop.changed();
    await vi.advanceTimersByTimeAsync(0);
    expect(probe).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(probe).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(probe).toHaveBeenCalledTimes(3);
    loop.stop();
    await vi.advanceTimersByTimeAsync(180_000);
    expect(probe).toHaveBeenCalledTimes(3);
  });

  it('caps concurrent probes on the host', async () => {
    const a = agentApi(new Map([[32, 'Movable']]));
    a.hold(true);
    const prober = new GuestProber(a.api, { intervalMs: 0, deadlineMs: 5_000, concurrency: 2 });
    const all = Promise.all([1, 2, 3, 4].map(() => prober.probe(ref, [d1])));
    await vi.waitFor(() => expect(a.waiting).toBe(2));
    // Released one command at a time: never more than two probes wait on the agent.
    for (let i = 0; i < 40 && a.waiting > 0; i++) {
      expect(a.waiting).toBeLessThanOrEqual(2);
      a.release();
      await new Promise((r) => setImmediate(r));
    }
    a.hold(false);
    a.release();
    const views = await all;
    expect(views).toHaveLength(4);
  });
});

describe('probeDeadlineMs', () => {
  it('grows with the blocks to read (3 agent commands each), from the base deadline', () => {
    expect(probeDeadlineMs(3000, [])).toBe(3000);
    expect(probeDeadlineMs(3000, [d1])).toBe(3030);
    // 64 GiB of DIMMs in 128 MiB blocks: 512 blocks.
    expect(
      probeDeadlineMs(3000, [
        { ...d1, size: 32768 },
        { ...d2, size: 32768 },
      ]),
    ).toBe(3000 + 512 * 30);
  });
});

describe('holdsKernelMemory', () => {
  it('normal and mixed would be refused; movable, offline and unknown not', () => {
    expect(holdsKernelMemory(view('normal'))).toBe(true);
    expect(holdsKernelMemory({ online: false, zone: 'mixed' })).toBe(true);
    expect(holdsKernelMemory(view('movable'))).toBe(false);
    expect(holdsKernelMemory(view('offline'))).toBe(false);
    expect(holdsKernelMemory({ online: false, zone: 'unknown' })).toBe(false);
    expect(holdsKernelMemory(undefined)).toBe(false);
  });
});
