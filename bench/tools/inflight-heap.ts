// Profiling aid (not a bench): what N unplugs in flight hold on the daemon's
// heap, the survivors every scavenge copies while they wait for their guests.
// Heap snapshots (the daemon's --heapsnapshot-signal) idle and with all N
// detached and waiting (the fake releases after 4 s), diffed by constructor
// and divided by N.
// usage: node --import tsx bench/tools/inflight-heap.ts [N] [ROWS] [--retainers KEY]
//   --retainers: who points at the objects of one constructor key, e.g. '(string)', idle and busy
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDaemon, startFakeProcess, unplugParams } from '../fake-host.js';
import { LightRpc } from '../ws-load.js';
import { HeapSnapshot } from './heap-snapshot.js';

const n = Number(process.argv[2] ?? 500);
const rows = Number(process.argv[3] ?? 30);
const dir = mkdtempSync(join(tmpdir(), 'vmhostd-inflight-'));
const fake = await startFakeProcess({ vms: n, dimms: 8, eventDelayMs: 4000, eventBeforeReply: true });
const d = await spawnDaemon(fake, {
  readyTimeoutMs: 180_000,
  nodeArgs: ['--heapsnapshot-signal=SIGPROF', `--diagnostic-dir=${dir}`],
});
const pid = d.proc.pid ?? -1;
const conns = await Promise.all(Array.from({ length: 8 }, () => LightRpc.connect(d.url)));
const round = (dimm: number) =>
  Promise.all(
    fake.vms.map((vm, i) => conns[i % 8]?.call('VM.hotunplugMemory', unplugParams(vm, vm.dimms[dimm] ?? ''))),
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Signals a snapshot and waits (deadline 120 s) for its file; the daemon writes it on its main thread, so a ping answered after it appears means it is whole. */
async function snapshot(k: number): Promise<string> {
  process.kill(pid, 'SIGPROF');
  const end = performance.now() + 120_000;
  for (;;) {
    const files = readdirSync(dir)
      .filter((f) => f.endsWith('.heapsnapshot'))
      .sort();
    if (files.length >= k) {
      await conns[0]?.call('Host.ping');
      return join(dir, files[k - 1] ?? '');
    }
    if (performance.now() > end) throw new Error('no heap snapshot within 120 s');
    await sleep(200);
  }
}

await round(0); // warm-up: V8 optimises the path
await sleep(500);
const idle = await snapshot(1);
const inFlight = round(1);
await sleep(1500); // all detached and waiting (the release comes 4 s after each detach)
const busy = await snapshot(2);
await inFlight;
const [idleSnap, busySnap] = [new HeapSnapshot(idle), new HeapSnapshot(busy)];
const a = idleSnap.tally();
const b = busySnap.tally();
const diff = [...b]
  .map(([k, t]) => ({
    k,
    count: t.count - (a.get(k)?.count ?? 0),
    bytes: t.selfBytes - (a.get(k)?.selfBytes ?? 0),
  }))
  .sort((x, y) => y.bytes - x.bytes);
const total = diff.reduce((s, r) => s + r.bytes, 0);
console.log(`${n} unplugs in flight hold ${(total / n).toFixed(0)} bytes each (self sizes, by constructor):`);
for (const r of diff.slice(0, rows)) {
  console.log(
    `${(r.bytes / n).toFixed(0).padStart(7)} B ${(r.count / n).toFixed(2).padStart(7)} objects  ${r.k}`,
  );
}
const ri = process.argv.indexOf('--retainers');
const key = ri < 0 ? undefined : process.argv[ri + 1];
if (key) {
  const before = new Map(idleSnap.retainersOf(key, 1000));
  console.log(`retainers of ${key}, per unplug in flight:`);
  for (const [k, c] of busySnap
    .retainersOf(key, 1000)
    .map(([k, c]) => [k, c - (before.get(k) ?? 0)] as const)
    .sort((x, y) => y[1] - x[1])
    .slice(0, rows))
    console.log(`${(c / n).toFixed(2).padStart(7)}  ${k}`);
}
for (const c of conns) c.close();
await d.stop();
await fake.stop();
