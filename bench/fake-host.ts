// The fake-libvirtd side of the daemon benches: a fake libvirtd in the bench
// process holding N running transient VMs with hot-plugged (ua-*) DIMMs, and
// the real daemon as a child process (as in production) connected to it.

import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DomainRef } from '../src/libvirt/types.js';
import { FakeLibvirtd } from '../test/fakes/fake-libvirtd.js';
import { DaemonProcess } from '../test/helpers/daemon.js';
import { type EchoServer, spawnListeningChild } from './ws-load.js';

export interface FakeVm {
  uuid: string;
  ref: DomainRef;
  /** DIMM aliases not yet unplugged, all 128 MiB on node 0. */
  dimms: string[];
}

export const DIMM_MIB = 128;

/** Adds `count` running VMs (base 1024 MiB) with `dimms` 128 MiB hot-plugged DIMMs each. */
export function addVms(
  fake: FakeLibvirtd,
  count: number,
  dimms: number,
  opts: { eventDelayMs?: number; eventBeforeReply?: boolean; prefix?: string } = {},
): FakeVm[] {
  const out: FakeVm[] = [];
  for (let i = 0; i < count; i++) {
    const aliases = Array.from({ length: dimms }, (_, k) => `ua-bench-${i}-${k}`);
    const ref = fake.addDomain({
      name: `${opts.prefix ?? 'bench'}-${i}`,
      memoryMiB: 1024,
      maxMemoryMiB: 1024 + 16 * DIMM_MIB,
      slots: 16,
      dimms: aliases.map((alias, slot) => ({ alias, sizeMiB: DIMM_MIB, node: 0, slot })),
      running: true,
      persistent: false,
      unplug: 'release',
      eventDelayMs: opts.eventDelayMs ?? 0,
      eventBeforeReply: opts.eventBeforeReply ?? true,
    });
    out.push({ uuid: ref.uuid, ref, dimms: aliases });
  }
  return out;
}

const root = fileURLToPath(new URL('../', import.meta.url));
const buildDir = join(root, '.cache/bench-build');
let built: Promise<string> | undefined;

/**
 * Compiles src/ once per bench run into .cache/bench-build/dist (gitignored),
 * so the daemon runs as in production: plain node on compiled JS, no tsx
 * loader thread in its CPU time or RSS. Returns the entry script.
 */
export function buildDaemon(): Promise<string> {
  built ??= (async () => {
    const outDir = join(buildDir, 'dist');
    await promisify(execFile)(
      process.execPath,
      [
        join(root, 'node_modules/typescript/bin/tsc'),
        '-p',
        join(root, 'tsconfig.build.json'),
        '--outDir',
        outDir,
      ],
      { cwd: root, timeout: 120_000 },
    );
    // version.ts reads ../package.json relative to itself.
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(join(buildDir, 'package.json'), JSON.stringify({ type: 'module', version: pkg.version }));
    const entry = join(outDir, 'bench-main.js');
    writeFileSync(entry, "import { main } from './daemon.js';\nawait main(process.argv.slice(2));\n");
    return entry;
  })();
  return built;
}

/** The daemon under a bench: after "ready" its log lines are only counted, unless kept. */
export class BenchDaemon extends DaemonProcess {
  /** Log lines written since "ready" (when the logs are not kept). */
  logLines = 0;
}

/**
 * The daemon as a child process on the fake (as in production: its own
 * process, compiled JS), logging at info to a pipe; resolves once it logged
 * "ready". From then on its log lines are counted, not parsed (parsing them
 * would be the bench process's CPU, competing with the daemon on this
 * machine's 2 cores), unless `keepLogs` (then `logs` fills as in tests).
 * `nodeArgs` go to node itself (e.g. --cpu-prof, not allowed in NODE_OPTIONS).
 */
export async function spawnDaemon(
  fake: { socketPath: string },
  opts: { nodeArgs?: string[]; args?: string[]; readyTimeoutMs?: number; keepLogs?: boolean } = {},
): Promise<BenchDaemon> {
  const entry = await buildDaemon();
  // BENCH_DAEMON_NODE_ARGS: extra node flags for every bench daemon (e.g. --cpu-prof), for profiling a whole bench.
  const extra = process.env.BENCH_DAEMON_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const args = [
    ...extra,
    ...(opts.nodeArgs ?? []),
    entry,
    '--listen',
    '127.0.0.1:0',
    '--log-level',
    'info',
    '--no-console',
    '--libvirt-socket',
    fake.socketPath,
    ...(opts.args ?? []),
  ];
  const d = new BenchDaemon(spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] }));
  try {
    const ready = await d.waitForLog((l) => l.msg === 'ready', opts.readyTimeoutMs ?? 120_000);
    d.url = String(ready.url);
  } catch (err) {
    await d.kill();
    throw err;
  }
  const out = d.proc.stdout;
  if (!opts.keepLogs && out) {
    out.removeAllListeners('data');
    out.on('data', (chunk: string) => {
      for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', i + 1)) d.logLines++;
    });
  }
  return d;
}

export function unplugParams(vm: FakeVm, alias: string, timeoutS = 30): Record<string, unknown> {
  return {
    vmID: vm.uuid,
    params: { vmId: vm.uuid, memory: { size: DIMM_MIB, node: 0, alias } },
    timeout: timeoutS,
  };
}

export interface FakeProcess {
  socketPath: string;
  vms: FakeVm[];
  pid: number;
  /** The calls the fake has received so far, by procedure name (e.g. DOMAIN_GET_XML_DESC). */
  callCounts(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

const fakeEntry = fileURLToPath(new URL('./fake-server.ts', import.meta.url));

/** bench/fake-server.ts as a child process: the fake libvirtd in its own process, as libvirtd is. */
export async function startFakeProcess(spec: {
  vms: number;
  dimms: number;
  eventDelayMs?: number;
  eventBeforeReply?: boolean;
}): Promise<FakeProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', fakeEntry, JSON.stringify(spec)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // Lines after the first answer "counts" requests, in order.
  const answers: ((line: string) => void)[] = [];
  const info = await new Promise<{ socketPath: string; vms: FakeVm[] }>((resolve, reject) => {
    let buf = '';
    let first = true;
    const t = setTimeout(() => reject(new Error('fake libvirtd did not start within 60 s')), 60_000);
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (first) {
          first = false;
          clearTimeout(t);
          resolve(JSON.parse(line) as { socketPath: string; vms: FakeVm[] });
        } else {
          answers.shift()?.(line);
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`fake libvirtd exited (${code}) before listening`));
    });
  });
  return {
    ...info,
    pid: child.pid ?? -1,
    callCounts() {
      const answer = new Promise<string>((r) => answers.push(r));
      child.stdin.write('counts\n');
      return answer.then((l) => JSON.parse(l) as Record<string, number>);
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const relayEntry = fileURLToPath(new URL('./floor-relay.ts', import.meta.url));

/**
 * bench/floor-relay.ts on `fake`: the wire contract of VM.hotunplugMemory and
 * nothing else (the migration check, detach, wait, two notifications, reply),
 * its notifications' VM status shaped as `shown`, the daemon's VM.getStats
 * result (a list of one, or the stats).
 */
export function startFloorRelay(fake: FakeProcess, shown: unknown): Promise<EchoServer> {
  const vms = fake.vms.map((v) => ({ uuid: v.uuid, ref: v.ref }));
  const stats = Array.isArray(shown) ? shown[0] : shown;
  return spawnListeningChild(relayEntry, { socketPath: fake.socketPath, vms, stats }, 'floor relay');
}

export { FakeLibvirtd };
