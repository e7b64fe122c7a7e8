// Profiling aid (not a bench): what one unplug costs the daemon, in counts
// that do not depend on the machine's load: libvirt calls by procedure (from
// the fake), log lines, JSON serialisations and parses, XML parses and
// builds (bench/tools/count-preload.mjs), WebSocket messages the client
// receives, and the daemon's CPU time; with --strace also its system calls
// (strace -c -f, which slows it: read the counts, not the times).
// usage: node --import tsx bench/tools/unplug-counts.ts [N] [--concurrent] [--strace] [--cpu-prof] [--release-ms MS] [--vms V] [--conns C]
//   --concurrent: the N unplugs at once on N VMs over 8 connections (else one at a time)
//   --release-ms: the fake's guests release after MS (default 0: at once); --vms: VMs on the fake (at least those needed)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { spawnDaemon, startFakeProcess, unplugParams } from '../fake-host.js';
import { cpuMs, threadCpuMs } from '../lib.js';

const n = Number(process.argv[2] ?? 200);
const concurrent = process.argv.includes('--concurrent');
const strace = process.argv.includes('--strace');
const preload = fileURLToPath(new URL('./count-preload.mjs', import.meta.url));
const opt = (name: string): number | undefined => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : Number(process.argv[i + 1]);
};
const releaseMs = opt('--release-ms') ?? 0;
const CONNS = opt('--conns') ?? (concurrent ? 8 : 1);
const vmsNeeded = Math.max(concurrent ? n : Math.ceil(n / 4), opt('--vms') ?? 0);
// Half the DIMMs for the warm-up, half measured.
const fake = await startFakeProcess({
  vms: vmsNeeded,
  dimms: 8,
  eventDelayMs: releaseMs,
  eventBeforeReply: true,
});
const profDir = mkdtempSync(join(tmpdir(), 'vmhostd-prof-'));
const prof = process.argv.includes('--cpu-prof') ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
const daemon = await spawnDaemon(fake, { nodeArgs: [`--import=${preload}`, ...prof] });
const pid = daemon.proc.pid ?? -1;

// Raw sockets: count every message, parse only replies.
const received = { replies: 0, notifications: 0, bytes: 0 };
const pending = new Map<number, () => void>();
let nextId = 1;
const sockets = await Promise.all(
  Array.from(
    { length: CONNS },
    () =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(daemon.url, { perMessageDeflate: false });
        ws.on('message', (data: Buffer) => {
          received.bytes += data.length;
          const msg = JSON.parse(data.toString()) as { id?: number; error?: unknown };
          if (msg.id === undefined) {
            received.notifications++;
            return;
          }
          received.replies++;
          if (msg.error) throw new Error(JSON.stringify(msg.error));
          pending.get(msg.id)?.();
          pending.delete(msg.id);
        });
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      }),
  ),
);
const call = (i: number, params: Record<string, unknown>) =>
  new Promise<void>((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    sockets[i % CONNS]!.send(JSON.stringify({ jsonrpc: '2.0', id, method: 'VM.hotunplugMemory', params }));
  });
// With --vms >= 2N (concurrent), the warm-up runs on the second N VMs and the
// measurement on the first N, so both see VMs with all 8 DIMMs (a VM's stats,
// notifications and metadata grow with its DIMMs).
const separate = concurrent && fake.vms.length >= 2 * n;
const unplugs = async (dimmBase: number) => {
  if (concurrent) {
    const vms = separate && dimmBase === 0 ? fake.vms.slice(n, 2 * n) : fake.vms.slice(0, n);
    const base = separate ? 0 : dimmBase;
    for (let k = 0; k < 4; k++) {
      await Promise.all(vms.map((vm, i) => call(i, unplugParams(vm, vm.dimms[base + k]!))));
    }
    return;
  }
  for (let i = 0; i < n; i++) {
    const vm = fake.vms[Math.floor(i / 4)]!;
    await call(0, unplugParams(vm, vm.dimms[dimmBase + (i % 4)]!));
  }
};
const daemonCounts = async (): Promise<Record<string, number>> => {
  const seen = daemon.stderr.length;
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 200; i++) {
    const line = daemon.stderr.slice(seen).find((l) => l.includes('COUNTS '));
    if (line)
      return JSON.parse(line.slice(line.indexOf('COUNTS ') + 7).split('\n')[0]!) as Record<string, number>;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no COUNTS line from the daemon');
};
const snapshot = async () => ({
  daemon: await daemonCounts(),
  fake: await fake.callCounts(),
  logLines: daemon.logLines,
  received: { ...received },
  cpu: cpuMs(pid),
  threads: threadCpuMs(pid),
});

await unplugs(0); // warm-up: V8 optimises the path
await new Promise((r) => setTimeout(r, 200)); // fire-and-forget metadata writes land
const before = await snapshot();
let tracer: ReturnType<typeof spawn> | undefined;
const traceFile = join(mkdtempSync(join(tmpdir(), 'vmhostd-strace-')), 'strace.txt');
if (strace) {
  tracer = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', traceFile], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 500));
}
const total = concurrent ? n * 4 : n;
const t0 = performance.now();
await unplugs(4);
const wall = performance.now() - t0;
await new Promise((r) => setTimeout(r, 200));
if (tracer) {
  const done = new Promise((r) => tracer?.once('exit', r));
  tracer.kill('SIGINT');
  await done;
}
const after = await snapshot();
const per = (a: number, b: number) => Math.round(((a - b) / total) * 100) / 100;
const diff = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(
    Object.keys(a)
      .map((k) => [k, per(a[k] ?? 0, b[k] ?? 0)] as const)
      .filter(([, v]) => v !== 0),
  );
console.log(
  `${total} unplugs${concurrent ? ` (${n} at once, 8 connections)` : ' (one at a time)'}, per unplug:`,
);
console.log('  daemon:', JSON.stringify(diff(after.daemon, before.daemon)));
console.log('  libvirt calls:', JSON.stringify(diff(after.fake, before.fake)));
console.log('  log lines:', per(after.logLines, before.logLines));
console.log('  client received:', JSON.stringify(diff(after.received, before.received)));
console.log(`  daemon CPU: ${per(after.cpu, before.cpu)} ms; wall ${(wall / total).toFixed(3)} ms`);
console.log(`  daemon CPU per unplug by thread (ms): ${JSON.stringify(diff(after.threads, before.threads))}`);
if (strace) {
  const lines = readFileSync(traceFile, 'utf8').split('\n');
  console.log('  syscalls per unplug (strace -c -f):');
  for (const l of lines) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(l);
    if (m && Number(m[1]) / total >= 0.05)
      console.log(`    ${(Number(m[1]) / total).toFixed(2).padStart(7)}  ${m[2]}`);
  }
}
for (const ws of sockets) ws.terminate();
await daemon.stop();
await fake.stop();
if (prof.length) console.log(`profile in ${profDir} (python3 bench/tools/top-self.py FILE 40 --inclusive)`);
