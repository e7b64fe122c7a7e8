// Real guest (QEMU TCG on the real libvirtd): VM.hotunplugMemory through the
// daemon (child process, compiled, confined to this bench's domain) against
// the floor: the same unplug done the way VDSM does it, with libvirt's own C
// library (python3-libvirt, bench/libvirt_unplug.py: detachDeviceFlags LIVE,
// then the device-removed callback), on one cooperative guest, in one run.
// Each round runs both, alternating which goes first (ABBA), so drift in the
// machine's load falls on both alike. Before each unplug a 128 MiB DIMM is
// plugged (through the daemon) and the guest has onlined it (untimed). Ours
// is timed by the JSON-RPC client (what an engine sees, WebSocket hop
// included); python's inside python (no pipe hop). Goal (issue 12): median
// within 1.10x; p50 and p90 of both are reported. The guest is destroyed at
// the end, also on failure.

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { defaultSocketPath } from '../src/libvirt/client.js';
import { buildDetachDimmXml } from '../src/virt/dimm-xml.js';
import type { DaemonProcess, LogLine } from '../test/helpers/daemon.js';
import { type Guest, LIBVIRT_URI, startGuest } from '../test/helpers/guest.js';
import { spawnDaemon } from './fake-host.js';
import { type BenchResult, summarize, withDeadline } from './lib.js';
import { LightRpc } from './ws-load.js';

// One unplug per side per round, after one warm-up round. The guest's release
// time varies 28-44 ms from one unplug to the next: 20 rounds keep the medians
// steady enough to resolve the few ms the daemon adds.
const ROUNDS = 20;
const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-libvirt
const here = dirname(fileURLToPath(import.meta.url));
const DIMM_MIB = 128;

interface Device {
  alias: string;
  size: number;
  node: number;
  slot: number;
  base: string;
}

/** bench/libvirt_unplug.py as a child: one request line in, one answer line out, in order. */
class PythonUnplugger {
  private readonly waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  private stderr = '';
  private exited = false;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (l) => this.waiting.shift()?.resolve(l));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      this.stderr += c;
    });
    child.once('exit', () => {
      this.exited = true;
      const err = new Error(`libvirt_unplug.py exited: ${this.stderr.trim()}`);
      for (const w of this.waiting.splice(0)) w.reject(err);
    });
  }

  static async start(): Promise<PythonUnplugger> {
    const p = new PythonUnplugger(spawn(PYTHON, [join(here, 'libvirt_unplug.py'), LIBVIRT_URI]));
    await withDeadline('libvirt_unplug.py start', 30_000, () => p.answer()); // {"ready": true}
    return p;
  }

  private answer(): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error(`libvirt_unplug.py exited: ${this.stderr.trim()}`));
    return new Promise<string>((resolve, reject) => this.waiting.push({ resolve, reject })).then(
      (l) => JSON.parse(l) as Record<string, unknown>,
    );
  }

  async unplug(uuid: string, alias: string, xml: string): Promise<number> {
    const answered = this.answer();
    this.child.stdin.write(`${JSON.stringify({ uuid, alias, xml, timeout: 60 })}\n`);
    const a = await answered;
    if (typeof a.ms !== 'number')
      throw new Error(`python3-libvirt unplug of ${alias} failed: ${String(a.error)}`);
    return a.ms;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin.end();
    this.child.kill('SIGTERM');
    await gone;
  }
}

const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;

/** The daemon's own step timings of the timed unplugs: "step at p50 ms" for each logged step, in order. */
function stepMedians(logs: readonly LogLine[], aliases: ReadonlySet<string>): string {
  const at = new Map<string, number[]>();
  const add = (k: string, ms: number) => at.set(k, [...(at.get(k) ?? []), ms]);
  for (const l of logs) {
    if (l.operation !== 'hotunplug' || !aliases.has(String(l.alias))) continue;
    // The final line of an unplug carries every step's time (`steps`); older daemons logged each step.
    if (l.steps) for (const [k, ms] of Object.entries(l.steps as Record<string, number>)) add(k, ms);
    else if (typeof l.durationMs === 'number') add(String(l.step ?? l.msg), l.durationMs);
  }
  return [...at]
    .map(([k, v]) => [k, summarize(v, 'ms').median] as const)
    .sort((a, b) => a[1] - b[1])
    .map(([k, v]) => `${k} ${v.toFixed(1)}`)
    .join('; ');
}

export async function run(): Promise<BenchResult[]> {
  let guest: Guest | undefined;
  let daemon: DaemonProcess | undefined;
  let rpc: LightRpc | undefined;
  let py: PythonUnplugger | undefined;
  try {
    guest = await startGuest({ kind: 'cooperative', namePrefix: 'bench' });
    const g = guest;
    daemon = await spawnDaemon(
      { socketPath: defaultSocketPath() },
      { args: ['--domain-prefix', g.name, '--unplug-timeout', '60'], keepLogs: true },
    );
    // A light client: no schema checks of the notifications that arrive with each reply (python's side does none).
    rpc = await LightRpc.connect(daemon.url);
    const c = rpc;
    py = await PythonUnplugger.start();
    const p = py;

    // The guest prints MemTotal periodically: compare against its value at boot.
    const baseKiB = await g.memTotalKiB();
    let n = 0;
    const plug = async (): Promise<Device> => {
      const alias = `ua-bench-${++n}`;
      await g.waitForMemTotal((k) => k <= baseKiB, 60_000); // the previous DIMM is gone
      const stats = await c.call<{ memoryDevices: Device[] }>('VM.hotplugMemory', {
        vmID: g.uuid,
        params: { vmId: g.uuid, memory: { size: DIMM_MIB, node: 0, alias } },
      });
      // Unplug only what the guest has onlined, as an engine would.
      await g.waitForMemTotal((k) => k > baseKiB, 60_000);
      const d = stats.memoryDevices.find((x) => x.alias === alias);
      if (!d) throw new Error(`plugged ${alias} is not listed`);
      return d;
    };
    const timedAliases = new Set<string>();
    const viaDaemon = async (d: Device, timed = true): Promise<number> => {
      if (timed) timedAliases.add(d.alias);
      const t0 = performance.now();
      const r = await c.call<{ status: string }>('VM.hotunplugMemory', {
        vmID: g.uuid,
        params: { vmId: g.uuid, memory: { size: d.size, node: d.node, alias: d.alias } },
        timeout: 60,
      });
      const dt = performance.now() - t0;
      if (r.status !== 'removed') throw new Error(`unplug answered ${JSON.stringify(r)}`);
      return dt;
    };
    const viaPython = (d: Device): Promise<number> =>
      p.unplug(
        g.uuid,
        d.alias,
        buildDetachDimmXml({ sizeMiB: d.size, node: d.node, alias: d.alias, slot: d.slot, base: d.base }),
      );

    const ours: number[] = [];
    const base: number[] = [];
    await withDeadline('real-guest unplugs', 600_000, async () => {
      // One untimed warm-up of each path (first attach/detach on a fresh guest is slower).
      await viaDaemon(await plug(), false);
      await viaPython(await plug());
      for (let i = 0; i < ROUNDS; i++) {
        if (i % 2 === 0) {
          ours.push(await viaDaemon(await plug()));
          base.push(await viaPython(await plug()));
        } else {
          base.push(await viaPython(await plug()));
          ours.push(await viaDaemon(await plug()));
        }
      }
    });
    const o = summarize(ours, 'ms');
    const b = summarize(base, 'ms');
    const ratio = o.median / b.median;
    const steps = stepMedians(daemon.logs, timedAliases);
    return [
      {
        name: 'real guest VM.hotunplugMemory',
        what: `unplug of a ${DIMM_MIB} MiB DIMM from a cooperative TCG guest until removed (ms): daemon call vs python3-libvirt detachDeviceFlags + device-removed callback, alternated ABBA`,
        runs: ROUNDS,
        ours: o,
        baseline: { ...b, name: 'python3-libvirt detach+callback' },
        ratio,
        target: 'p50 ratio <= 1.10',
        pass: ratio <= 1.1,
        goal: '12',
        note: `${signed(o.median - b.median)} ms p50, ${signed(o.p90 - b.p90)} ms p90; daemon's steps (p50 ms since the call): ${steps}`,
      },
    ];
  } finally {
    await py?.stop();
    rpc?.close();
    await daemon?.stop();
    await guest?.destroy();
  }
}
