// Leak hunt (not a bench): the load of test/integration/daemon-fake-load.test.ts
// (CLIENTS WebSocket clients x REQUESTS mixed requests: Host.ping, VM.getStats,
// owned and contended unplugs of DIMMs plugged through the daemon on VMS fake
// VMs) run RUNS times against one daemon child (compiled, as in production).
// After each run the daemon collects fully and writes a heap snapshot
// (leak-hunt-preload.mjs); the tool prints heapUsed per run and the objects
// whose count grew between run 2 and the last run, with their count after
// every run (linear growth = leak, a plateau = caches/warm-up) and who
// retains them.
// --tsx runs the daemon from source through tsx with the integration test's
// options (test/helpers/fake-daemon.ts) instead of compiled JS.
// usage: node --import tsx bench/tools/leak-hunt.ts [--tsx] [RUNS=6] [CLIENTS=200] [REQUESTS=500] [VMS=100]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startOnFake } from '../../test/helpers/fake-daemon.js';
import { prng } from '../../test/helpers/prng.js';
import { FakeLibvirtd, spawnDaemon } from '../fake-host.js';
import { HeapSnapshot, type Tally } from './heap-snapshot.js';

const TSX = process.argv.includes('--tsx');
const numArgs = process.argv.slice(2).filter((a) => a !== '--tsx');
const [RUNS, CLIENTS, REQUESTS, VMS] = [6, 200, 500, 100].map((d, i) => Number(numArgs[i] ?? d)) as [
  number,
  number,
  number,
  number,
];
const DIMMS_PER_VM = 8;
const WINDOW = 16;
const PRELOAD = fileURLToPath(new URL('./leak-hunt-preload.mjs', import.meta.url));

type Reply = Record<string, unknown>;

class Client {
  private nextId = 1;
  private readonly pending = new Map<number, (m: Reply) => void>();
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d: Buffer) => {
      const text = d.toString('utf8');
      if (text.startsWith('{"jsonrpc":"2.0","method"')) return; // a notification
      const m = JSON.parse(text) as Reply;
      const r = this.pending.get(m.id as number);
      if (!r) throw new Error(`reply with unknown id: ${text.slice(0, 200)}`);
      this.pending.delete(m.id as number);
      r(m);
    });
  }
  static connect(url: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => resolve(new Client(ws)));
      ws.once('error', reject);
    });
  }
  call(method: string, params?: unknown): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close();
    });
  }
}

const memParams = (vm: string, alias: string) => ({
  vmID: vm,
  params: { vmId: vm, memory: { size: 128, node: 0, alias } },
});

async function run(url: string, vmIds: string[], runNo: number): Promise<Record<string, number>> {
  // Seed: DIMMS_PER_VM fresh DIMMs per VM, plugged through the daemon.
  const seeders = await Promise.all(Array.from({ length: 4 }, () => Client.connect(url)));
  const targets = (
    await Promise.all(
      vmIds.map(async (vm, v) => {
        const out: { vm: string; alias: string }[] = [];
        for (let d = 0; d < DIMMS_PER_VM; d++) {
          const alias = `ua-run${runNo}-v${v}-d${d}`;
          const r = await seeders[v % 4]!.call('VM.hotplugMemory', memParams(vm, alias));
          if (!('result' in r)) throw new Error(`seeding ${alias}: ${JSON.stringify(r.error)}`);
          out.push({ vm, alias });
        }
        return out;
      }),
    )
  ).flat();
  await Promise.all(seeders.map((c) => c.close()));

  const owned = targets.length / CLIENTS;
  const outcomes: Record<string, number> = {};
  const clients = await Promise.all(Array.from({ length: CLIENTS }, () => Client.connect(url)));
  await Promise.all(
    clients.map(async (c, i) => {
      const rnd = prng(runNo * 1000 + i);
      const mine = targets.slice(i * owned, (i + 1) * owned);
      const others = [(i + 1) % CLIENTS, (i + CLIENTS / 2) % CLIENTS].flatMap((j) =>
        targets.slice(j * owned, j * owned + 2),
      );
      const ops: (() => Promise<string>)[] = [...mine, ...others].map((t) => async () => {
        const r = await c.call('VM.hotunplugMemory', memParams(t.vm, t.alias));
        return 'result' in r
          ? 'unplug ok'
          : `unplug ${(r.error as { data?: { reason?: string } }).data?.reason}`;
      });
      while (ops.length < REQUESTS) {
        const vm = vmIds[Math.floor(rnd() * vmIds.length)]!;
        ops.push(
          rnd() < 0.5
            ? async () => ((await c.call('Host.ping')).result === true ? 'ping ok' : 'ping error')
            : async () =>
                'result' in (await c.call('VM.getStats', { vmID: vm })) ? 'stats ok' : 'stats error',
        );
      }
      for (let k = ops.length - 1; k > 0; k--) {
        const j = Math.floor(rnd() * (k + 1));
        [ops[k], ops[j]] = [ops[j]!, ops[k]!];
      }
      let next = 0;
      await Promise.all(
        Array.from({ length: WINDOW }, async () => {
          while (next < ops.length) {
            const o = await ops[next++]!();
            outcomes[o] = (outcomes[o] ?? 0) + 1;
          }
        }),
      );
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  return outcomes;
}

const dir = mkdtempSync(join(tmpdir(), 'vmhostd-leak-'));
process.env.LEAK_HUNT_DIR = dir;
const fake = await FakeLibvirtd.start();
const vmIds = Array.from(
  { length: VMS },
  () => fake.addDomain({ memoryMiB: 1024, slots: 16, eventDelayMs: 2 }).uuid,
);
const nodeArgs = ['--expose-gc', '--max-semi-space-size=2', `--import=${PRELOAD}`];
const daemon = TSX
  ? (
      await startOnFake(fake, {
        unplugTimeoutS: 60,
        logLevel: 'info',
        env: { NODE_OPTIONS: nodeArgs.join(' '), MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '131072' },
      })
    ).daemon
  : await spawnDaemon(fake, { nodeArgs, keepLogs: true });

async function snapshot(): Promise<{ file: string; heapUsed: number; rss: number }> {
  const n = daemon.logs.length;
  daemon.proc.kill('SIGUSR2');
  const l = await daemon.waitForLog(
    (x) => x.msg === 'leak-hunt-snapshot' && daemon.logs.indexOf(x) >= n,
    120_000,
  );
  return { file: String(l.file), heapUsed: Number(l.heapUsed), rss: Number(l.rss) };
}

const tallies: Map<string, Tally>[] = [];
const files: string[] = [];
const mb = (b: number) => (b / 1048576).toFixed(2);
try {
  const s0 = await snapshot();
  console.log(`before load: heapUsed ${mb(s0.heapUsed)} MB, rss ${mb(s0.rss)} MB`);
  tallies.push(new HeapSnapshot(s0.file).tally());
  files.push(s0.file);
  for (let r = 1; r <= RUNS; r++) {
    const t0 = performance.now();
    const outcomes = await run(daemon.url, vmIds, r);
    const ms = Math.round(performance.now() - t0);
    const s = await snapshot();
    const snap = new HeapSnapshot(s.file);
    tallies.push(snap.tally());
    files.push(s.file);
    console.log(
      `run ${r}: ${ms} ms ${JSON.stringify(outcomes)}; after GC heapUsed ${mb(s.heapUsed)} MB, rss ${mb(s.rss)} MB, ${snap.nodeCount} heap objects`,
    );
    // Only the snapshots compared below are kept.
    if (r > 2 && files[r - 1] && r - 1 !== 2) rmSync(files[r - 1]!, { force: true });
  }

  const a = tallies[2]!;
  const b = tallies[RUNS]!;
  const rows = [...b.entries()]
    .map(([k, t]) => ({
      k,
      dCount: t.count - (a.get(k)?.count ?? 0),
      dBytes: t.selfBytes - (a.get(k)?.selfBytes ?? 0),
    }))
    .filter((r) => r.dCount > 0 || r.dBytes > 0)
    .sort((x, y) => y.dBytes - x.dBytes)
    .slice(0, 30);
  const total = (m: Map<string, Tally>) => [...m.values()].reduce((s, t) => s + t.selfBytes, 0);
  console.log(
    `\nheap self size after run 2 -> run ${RUNS}: ${mb(total(a))} -> ${mb(total(b))} MB; growth by constructor (count after each run 0..${RUNS}):`,
  );
  for (const r of rows) {
    const series = tallies.map((t) => t.get(r.k)?.count ?? 0).join(' ');
    console.log(
      `${String(r.dBytes).padStart(9)} B ${String(r.dCount).padStart(7)} objs  ${r.k}   [${series}]`,
    );
  }
  const last = new HeapSnapshot(files[RUNS]!);
  for (const r of rows.filter((x) => !x.k.startsWith('(')).slice(0, 6)) {
    console.log(`\nretainers of ${r.k} after run ${RUNS}:`);
    for (const [k, n] of last.retainersOf(r.k, 6)) console.log(`  ${String(n).padStart(7)}  ${k}`);
  }
} finally {
  await daemon.stop();
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
}
