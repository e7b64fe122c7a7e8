import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultSocketPath } from '../src/libvirt/client.js';
import { buildDetachDimmXml } from '../src/virt/dimm-xml.js';
import type { DaemonProcess, LogLine } from '../test/helpers/daemon.js';
import { type Guest, startGuest } from '../test/helpers/guest.js';
import { spawnDaemon } from './fake-host.js';
import { type BenchResult, summarize, withDeadline } from './lib.js';
import { PythonPeer } from './python-peer.js';
import { LightRpc } from './ws-load.js';

// One unplug per side per round, after one warm-up round. The guest's release
// time varies 20-45 ms from one unplug to the next: with 20 rounds the ratio of
// the medians moved by ±0.1 between quiet runs (0.95-1.16), as much as the
// goal's margin; 40 rounds cut the median's standard error by √2.
const ROUNDS = 40;
const _here = dirname(fileURLToPath(import.meta.url));
const DIMM_MIB = 128;

interface Device {
  alias: string;
  size: number;
  node: number;
  slot: number;
  base: string;
}

const signed = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;

/** The daemon's own step timings of the timed unplugs: "step at p50 ms" for each logged step, in order. */
function stepMedians(logs: readonly LogLine[], aliases: ReadonlySet<string>): string {
  const at = new Map<string, number[]>();
  const add = (k: string, ms: number) => at.set(k, [...(at.get(k) ?? []), ms]);
  const ops = new Set<unknown>();
  for (const l of logs) {
    if (l.operation !== 'hotunplug' || !aliases.has(String(l.alias))) continue;
    ops.add(l.opId);
    // The final line of an unplug carries every step's time (`steps`); older daemons logged each step.
    if (l.steps) for (const [k, ms] of Object.entries(l.steps as Record<string, number>)) add(k, ms);
    else if (typeof l.durationMs === 'number') add(String(l.step ?? l.msg), l.durationMs);
  }
  // The dispatcher's time for the same calls: what is left of the client's figure is the WebSocket hop both ways.
  for (const l of logs) {
    if (l.msg === 'rpc call' && ops.has(l.opId) && typeof l.durationMs === 'number')
      add('rpc call', l.durationMs);
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
  let py: PythonPeer | undefined;
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
    py = await PythonPeer.start('libvirt_unplug.py');
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
      p.timed(
        {
          uuid: g.uuid,
          alias: d.alias,
          xml: buildDetachDimmXml({
            sizeMiB: d.size,
            node: d.node,
            alias: d.alias,
            slot: d.slot,
            base: d.base,
          }),
          timeout: 60,
        },
        `unplug of ${d.alias}`,
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
