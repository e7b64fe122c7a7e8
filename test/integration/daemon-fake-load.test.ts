// Load on one daemon child process backed by the fake libvirtd: 200
// concurrent WebSocket clients, each issuing 500 mixed requests (Host.ping,
// VM.getStats, unplugs of DIMMs on 100 VMs, some deliberately contended).
// Nothing may be lost or doubled: every id answered exactly once, every
// successful unplug announced exactly once to every connected client, each
// DIMM removed exactly once. Two identical runs; the daemon's RSS after the
// second stays within 10% of after the first.

import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { checkError, checkResult, type ErrorObject } from '../helpers/contract-check.js';
import { type FakeDaemon, FakeLibvirtd, rssKiB, startOnFake } from '../helpers/fake-daemon.js';
import { prng } from '../helpers/prng.js';

const GC_PRELOAD = fileURLToPath(new URL('../helpers/gc-on-signal.mjs', import.meta.url));
const VMS = 100;
const DIMMS_PER_VM = 8;
const CLIENTS = 200;
const REQUESTS_PER_CLIENT = 500;
const OWNED_PER_CLIENT = (VMS * DIMMS_PER_VM) / CLIENTS; // 4
const CONTENDED_PER_CLIENT = 4;
const WINDOW = 16; // requests in flight per client (the daemon allows 64)

interface Target {
  vm: string;
  alias: string;
}

interface RunStats {
  requests: number;
  replies: number;
  duplicates: number;
  unknownIds: number;
  badReplies: string[];
  outcomes: Record<string, number>;
  removedBy: Map<string, number>;
  deviceRemovedPerClient: number[];
  duplicateNotifications: number;
  vmStatusNotifications: number;
  durationMs: number;
}

class LoadClient {
  private nextId = 1;
  private readonly pending = new Map<number, (msg: Record<string, unknown>) => void>();
  readonly answered = new Set<number>();
  duplicates = 0;
  unknownIds = 0;
  readonly badReplies: string[] = [];
  readonly removed = new Set<string>();
  duplicateNotifications = 0;
  vmStatus = 0;
  private removedWaiter: (() => void) | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.onMessage(data.toString('utf8')));
  }

  static connect(url: string): Promise<LoadClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once('open', () => resolve(new LoadClient(ws)));
      ws.once('error', reject);
    });
  }

  private onMessage(text: string): void {
    // VM_status carries full VmStats; count it without parsing (the bulk of the traffic).
    if (text.startsWith('{"jsonrpc":"2.0","method":"|virt|VM_status|')) {
      this.vmStatus++;
      return;
    }
    const m = JSON.parse(text) as Record<string, unknown>;
    if (typeof m.method === 'string' && !('id' in m)) {
      if (m.method.startsWith('|virt|device_removed|')) {
        const p = m.params as { alias: string; late: boolean };
        const key = `${m.method.slice('|virt|device_removed|'.length)}/${p.alias}`;
        if (this.removed.has(key)) this.duplicateNotifications++;
        this.removed.add(key);
        this.removedWaiter?.();
      }
      return;
    }
    const id = m.id;
    if (typeof id !== 'number') {
      this.badReplies.push(text.slice(0, 200));
      return;
    }
    if (this.answered.has(id)) {
      this.duplicates++;
      return;
    }
    const resolve = this.pending.get(id);
    if (!resolve) {
      this.unknownIds++;
      return;
    }
    this.pending.delete(id);
    this.answered.add(id);
    if (m.jsonrpc !== '2.0' || 'result' in m === 'error' in m) this.badReplies.push(text.slice(0, 200));
    resolve(m);
  }

  /** Raw on purpose (it audits ids and envelopes), but answers are held to the contract like every API test's. */
  call(method: string, params?: unknown): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    const reply = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }), (err) => {
        if (err) reject(err);
      });
    });
    return reply.then((m) => {
      if ('result' in m) checkResult(method, m.result);
      else checkError(m.error as ErrorObject);
      return m;
    });
  }

  get sent(): number {
    return this.nextId - 1;
  }

  /** Resolves once `n` distinct device_removed notifications arrived; rejects at the deadline. */
  waitRemoved(n: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.removed.size >= n) {
          clearTimeout(t);
          this.removedWaiter = undefined;
          resolve();
        }
      };
      const t = setTimeout(() => {
        this.removedWaiter = undefined;
        reject(
          new Error(`only ${this.removed.size}/${n} device_removed notifications within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.removedWaiter = check;
      check();
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

describe('load: 200 clients x 500 mixed requests on one daemon (fake libvirtd)', () => {
  let fake: FakeLibvirtd;
  let fd: FakeDaemon;
  const vmIds: string[] = [];

  beforeAll(async () => {
    fake = await FakeLibvirtd.start();
    for (let i = 0; i < VMS; i++) {
      vmIds.push(fake.addDomain({ memoryMiB: 1024, slots: 16, eventDelayMs: 2 }).uuid);
    }
    fd = await startOnFake(fake, {
      unplugTimeoutS: 60,
      logLevel: 'info',
      // The notification journal is a bounded cache (10,000 entries by default, about 3,200
      // are added per run): kept small here so it is full after the first run, and the
      // second run measures retention beyond it.
      config: '[events]\nmax_entries = 1000\n',
      // Memory is compared after a full GC (SIGUSR2 -> gc-on-signal.mjs), so the check measures
      // retention, not where the collector happened to stand; a small young generation helps too.
      env: {
        NODE_OPTIONS:
          `${process.env.NODE_OPTIONS ?? ''} --expose-gc --max-semi-space-size=2 --import=${GC_PRELOAD}`.trim(),
        // glibc keeps freed arenas resident; trimming eagerly makes RSS follow live memory.
        MALLOC_ARENA_MAX: '2',
        MALLOC_TRIM_THRESHOLD_: '131072',
      },
    });
  });
  afterAll(async () => {
    await fd?.stop();
    await fake?.stop();
  });

  /** Plugs DIMMS_PER_VM fresh 128 MiB DIMMs into every VM through the daemon (VMs in parallel). */
  async function seed(run: number): Promise<Target[][]> {
    // 25 VMs per seeding connection keeps each under the per-connection in-flight cap.
    const seeders = await Promise.all(Array.from({ length: 4 }, () => LoadClient.connect(fd.daemon.url)));
    const perVm = await Promise.all(
      vmIds.map(async (vm, v) => {
        const c = seeders[v % seeders.length]!;
        const out: Target[] = [];
        for (let d = 0; d < DIMMS_PER_VM; d++) {
          const alias = `ua-run${run}-v${v}-d${d}`;
          const r = await c.call('VM.hotplugMemory', {
            vmID: vm,
            params: { vmId: vm, memory: { size: 128, node: 0, alias } },
          });
          if (!('result' in r)) throw new Error(`seeding ${alias}: ${JSON.stringify(r.error)}`);
          out.push({ vm, alias });
        }
        return out;
      }),
    );
    await Promise.all(seeders.map((c) => c.close()));
    for (const vm of vmIds) expect(fake.getDomainState(vm)?.liveDimms).toHaveLength(DIMMS_PER_VM);
    return perVm;
  }

  async function run(runNo: number): Promise<RunStats> {
    const perVm = await seed(runNo);
    const all = perVm.flat();
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, () => LoadClient.connect(fd.daemon.url)),
    );
    const outcomes: Record<string, number> = {};
    const removedBy = new Map<string, number>();
    const count = (k: string) => {
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    };

    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c, i) => {
        const rnd = prng(runNo * 1000 + i);
        // Owned DIMMs first in the list, then DIMMs owned by two other clients (contended).
        const owned = all.slice(i * OWNED_PER_CLIENT, (i + 1) * OWNED_PER_CLIENT);
        const others = [(i + 1) % CLIENTS, (i + CLIENTS / 2) % CLIENTS].flatMap((j) =>
          all.slice(j * OWNED_PER_CLIENT, j * OWNED_PER_CLIENT + CONTENDED_PER_CLIENT / 2),
        );
        const ops: ({ kind: 'unplug'; t: Target } | { kind: 'ping' } | { kind: 'stats'; vm: string })[] = [
          ...owned.map((t) => ({ kind: 'unplug' as const, t })),
          ...others.map((t) => ({ kind: 'unplug' as const, t })),
        ];
        while (ops.length < REQUESTS_PER_CLIENT) {
          ops.push(
            rnd() < 0.5
              ? { kind: 'ping' }
              : { kind: 'stats', vm: vmIds[Math.floor(rnd() * VMS)] ?? vmIds[0] ?? '' },
          );
        }
        // Shuffle so unplugs are spread through the run.
        for (let k = ops.length - 1; k > 0; k--) {
          const j = Math.floor(rnd() * (k + 1));
          [ops[k], ops[j]] = [ops[j]!, ops[k]!];
        }
        let next = 0;
        const worker = async () => {
          while (next < ops.length) {
            const op = ops[next++]!;
            if (op.kind === 'ping') {
              const r = await c.call('Host.ping');
              count(r.result === true ? 'ping ok' : `ping ${JSON.stringify(r.error)}`);
            } else if (op.kind === 'stats') {
              const r = await c.call('VM.getStats', { vmID: op.vm });
              const s = (r.result as { vmId?: string }[] | undefined)?.[0];
              count(s?.vmId === op.vm ? 'getStats ok' : `getStats ${JSON.stringify(r.error)}`);
            } else {
              const { vm, alias } = op.t;
              const r = await c.call('VM.hotunplugMemory', {
                vmID: vm,
                params: { vmId: vm, memory: { size: 128, node: 0, alias } },
              });
              if ('result' in r) {
                count('unplug removed');
                removedBy.set(`${vm}/${alias}`, (removedBy.get(`${vm}/${alias}`) ?? 0) + 1);
              } else {
                const e = r.error as { code: number; data?: { reason?: string } };
                count(`unplug ${e.code} ${e.data?.reason ?? ''}`);
              }
            }
          }
        };
        await Promise.all(Array.from({ length: WINDOW }, worker));
      }),
    );
    const successes = [...removedBy.values()].reduce((a, b) => a + b, 0);
    // Every client was connected through the whole run: each must hear of every removal.
    await Promise.all(clients.map((c) => c.waitRemoved(successes, 30_000)));
    const durationMs = performance.now() - t0;

    const stats: RunStats = {
      requests: clients.reduce((a, c) => a + c.sent, 0),
      replies: clients.reduce((a, c) => a + c.answered.size, 0),
      duplicates: clients.reduce((a, c) => a + c.duplicates, 0),
      unknownIds: clients.reduce((a, c) => a + c.unknownIds, 0),
      badReplies: clients.flatMap((c) => c.badReplies),
      outcomes,
      removedBy,
      deviceRemovedPerClient: clients.map((c) => c.removed.size),
      duplicateNotifications: clients.reduce((a, c) => a + c.duplicateNotifications, 0),
      vmStatusNotifications: clients.reduce((a, c) => a + c.vmStatus, 0),
      durationMs,
    };
    // Every notified removal is one that some client was told succeeded.
    for (const c of clients) for (const k of c.removed) expect(removedBy.has(k), k).toBe(true);
    await Promise.all(clients.map((c) => c.close()));
    return stats;
  }

  function check(s: RunStats): void {
    expect(s.requests).toBe(CLIENTS * REQUESTS_PER_CLIENT);
    expect(s.replies).toBe(s.requests);
    expect(s.duplicates).toBe(0);
    expect(s.unknownIds).toBe(0);
    expect(s.badReplies).toEqual([]);
    // Each of the 800 DIMMs removed exactly once; contended attempts lost cleanly.
    expect(s.removedBy.size).toBe(VMS * DIMMS_PER_VM);
    expect([...s.removedBy.values()].every((n) => n === 1)).toBe(true);
    expect(s.outcomes['unplug removed']).toBe(VMS * DIMMS_PER_VM);
    const unplugs = CLIENTS * (OWNED_PER_CLIENT + CONTENDED_PER_CLIENT);
    const lost = Object.entries(s.outcomes)
      .filter(([k]) => k.startsWith('unplug ') && k !== 'unplug removed')
      .reduce((a, [, n]) => a + n, 0);
    expect(s.outcomes['unplug removed']! + lost).toBe(unplugs);
    for (const k of Object.keys(s.outcomes)) {
      expect(
        [
          'ping ok',
          'getStats ok',
          'unplug removed',
          'unplug 85 already-unplugging',
          'unplug 85 device-not-found',
        ],
        k,
      ).toContain(k);
    }
    expect(s.deviceRemovedPerClient.every((n) => n === VMS * DIMMS_PER_VM)).toBe(true);
    expect(s.duplicateNotifications).toBe(0);
    for (const vm of vmIds) expect(fake.getDomainState(vm)?.liveDimms).toEqual([]);
  }

  it('loses nothing, answers nothing twice, and keeps memory flat over two identical runs', async () => {
    const pid = fd.daemon.proc.pid!;
    const gcOnce = async () => {
      const n = fd.daemon.logs.length;
      fd.daemon.proc.kill('SIGUSR2');
      const l = await fd.daemon.waitForLog(
        (x) => x.msg === 'test-gc' && fd.daemon.logs.indexOf(x) >= n,
        10_000,
      );
      // VmRSS from /proc, read just after the collection.
      return { rssKiB: rssKiB(pid), heapUsedKiB: Math.round(Number(l.heapUsed) / 1024) };
    };
    /** Lowest of three post-GC readings: live memory is a floor, pages still on their way back to the OS are noise. */
    const memAfterGc = async () => {
      const r = [await gcOnce(), await gcOnce(), await gcOnce()];
      return {
        rssKiB: Math.min(...r.map((x) => x.rssKiB)),
        heapUsedKiB: Math.min(...r.map((x) => x.heapUsedKiB)),
      };
    };
    const m0 = await memAfterGc();
    const first = await run(1);
    check(first);
    const m1 = await memAfterGc();
    const second = await run(2);
    check(second);
    const m2 = await memAfterGc();
    const rss2 = rssKiB(pid);
    expect(fd.daemon.running).toBe(true);

    const figures = (s: RunStats) => ({
      requests: s.requests,
      replies: s.replies,
      outcomes: s.outcomes,
      deviceRemovedNotifications: s.deviceRemovedPerClient.reduce((a, b) => a + b, 0),
      vmStatusNotifications: s.vmStatusNotifications,
      durationMs: Math.round(s.durationMs),
      reqPerS: Math.round(s.requests / (s.durationMs / 1000)),
    });
    console.log(
      `load figures: ${JSON.stringify({ first: figures(first), second: figures(second), afterGc: { start: m0, afterFirst: m1, afterSecond: m2 }, procRssKiB: rss2 })}`,
    );
    expect(m2.rssKiB).toBeLessThanOrEqual(m1.rssKiB * 1.1);
    expect(m2.heapUsedKiB).toBeLessThanOrEqual(m1.heapUsedKiB * 1.1);
  });
});
