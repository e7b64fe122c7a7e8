// Scale on the fake libvirtd (its own process): 1,000 running VMs with 8
// hot-plugged DIMMs each, the daemon as a child process (run through tsx,
// as everywhere in this repo, so its RSS includes tsx's loader thread).
//  - start-up: spawn to the "ready" log line, vs the same daemon on a fake
//    with no VMs (the fixed cost of a start);
//  - Host.getAllVmStats latency, vs Host.ping on the same connection;
//  - 500 concurrent VM.hotunplugMemory on 500 VMs (8 connections, all sent
//    at once): wall time until the last answer, vs one unplug alone; the
//    fake's guests release after GUEST_RELEASE_MS, about what the real TCG
//    guest takes for a 128 MiB DIMM (bench/real-guest.bench.ts: ~40 ms);
//  - RSS of the daemon (/proc/<pid>/status) when idle and after the unplugs,
//    vs the daemon with no VMs.
// Goals (issue 8): getAllVmStats < 50 ms, 500 unplugs within 3x one
// unplug's time, RSS < 150 MiB.

import { readFileSync } from 'node:fs';
import { LibvirtClient } from '../src/libvirt/client.js';
import { DomainAffect } from '../src/libvirt/types.js';
import type { DaemonProcess } from '../test/helpers/daemon.js';
import { TestRpcClient } from '../test/helpers/rpc-client.js';
import { type FakeProcess, type FakeVm, spawnDaemon, startFakeProcess, unplugParams } from './fake-host.js';
import { type BenchResult, rssMiB, summarize, withDeadline } from './lib.js';

const VMS = 1000;
const DIMMS = 8;
const CONCURRENT = 500;
const CONNS = 8; // 500 / 8 stays under the per-connection in-flight cap (64)
const START_RUNS = 3;
const STATS_CALLS = 30;
const SINGLE_RUNS = 15;
const ROUNDS = 2; // rounds of 500 concurrent unplugs (each on a fresh DIMM of each VM)
const GUEST_RELEASE_MS = 40;

/** CPU time (user + system, ms) a process has used, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/**
 * The same 500 concurrent unplugs without the daemon: our libvirt client doing
 * detach + waiting for device-removed against an identical fake. What the
 * machine and the fake need anyway; the daemon's share is the difference.
 */
async function directConcurrentUnplugs(): Promise<number[]> {
  const fake = await startFakeProcess({
    vms: CONCURRENT,
    dimms: DIMMS,
    eventDelayMs: GUEST_RELEASE_MS,
    eventBeforeReply: true,
  });
  const client = await LibvirtClient.connect({ socketPath: fake.socketPath, keepaliveIntervalMs: 0 });
  const waiting = new Map<string, () => void>();
  client.on('deviceRemoved', (e) => {
    const key = `${e.domain.uuid}/${e.alias}`;
    waiting.get(key)?.();
    waiting.delete(key);
  });
  const unplug = async (vm: FakeVm, alias: string) => {
    const removed = new Promise<void>((resolve) => waiting.set(`${vm.uuid}/${alias}`, resolve));
    const xml = `<memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target><alias name='${alias}'/></memory>`;
    await client.detachDeviceFlags(vm.ref, xml, DomainAffect.LIVE);
    await removed;
  };
  try {
    const wall: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const t0 = performance.now();
      await withDeadline('500 direct unplugs', 120_000, () =>
        Promise.all(fake.vms.map((vm) => unplug(vm, vm.dimms[round]!))),
      );
      wall.push(performance.now() - t0);
    }
    return wall;
  } finally {
    await client.close();
    await fake.stop();
  }
}

async function timedStart(fake: FakeProcess): Promise<{ d: DaemonProcess; ms: number }> {
  const t0 = performance.now();
  const d = await spawnDaemon(fake, { readyTimeoutMs: 180_000 });
  return { d, ms: performance.now() - t0 };
}

export async function run(): Promise<BenchResult[]> {
  const [big, empty] = await Promise.all([
    startFakeProcess({ vms: VMS, dimms: DIMMS, eventDelayMs: GUEST_RELEASE_MS, eventBeforeReply: true }),
    startFakeProcess({ vms: 0, dimms: 0 }),
  ]);
  const daemons: DaemonProcess[] = [];
  const clients: TestRpcClient[] = [];
  try {
    // Start-up, alternating; the last daemon of each kind stays for the rest.
    const startBig: number[] = [];
    const startEmpty: number[] = [];
    let bigD: DaemonProcess | undefined;
    let emptyD: DaemonProcess | undefined;
    for (let i = 0; i < START_RUNS; i++) {
      const last = i === START_RUNS - 1;
      const e = await timedStart(empty);
      startEmpty.push(e.ms);
      daemons.push(e.d);
      if (last) emptyD = e.d;
      else await e.d.stop();
      const b = await timedStart(big);
      startBig.push(b.ms);
      daemons.push(b.d);
      if (last) bigD = b.d;
      else await b.d.stop();
    }
    if (!bigD || !emptyD) throw new Error('no daemon');

    const c = await TestRpcClient.connect(bigD.url);
    clients.push(c);
    const time = async (fn: () => Promise<unknown>): Promise<number> => {
      const t0 = performance.now();
      await fn();
      return performance.now() - t0;
    };
    const first = await c.call<unknown[]>('Host.getAllVmStats');
    if (first.length !== VMS) throw new Error(`getAllVmStats listed ${first.length} VMs, expected ${VMS}`);
    const statsMs: number[] = [];
    const pingMs: number[] = [];
    for (let i = 0; i < STATS_CALLS; i++) {
      statsMs.push(await time(() => c.call('Host.getAllVmStats')));
      pingMs.push(await time(() => c.call('Host.ping')));
    }
    const rssIdle = rssMiB(bigD.proc.pid ?? -1);
    const rssEmpty = rssMiB(emptyD.proc.pid ?? -1);

    // One unplug alone (VMs past the first 500), then 500 at once.
    const vms: FakeVm[] = big.vms;
    const single: number[] = [];
    for (let i = 0; i < SINGLE_RUNS; i++) {
      const vm = vms[CONCURRENT + i]!;
      single.push(await time(() => c.call('VM.hotunplugMemory', unplugParams(vm, vm.dimms[0]!))));
    }
    const conns = await Promise.all(Array.from({ length: CONNS }, () => TestRpcClient.connect(bigD.url)));
    clients.push(...conns);
    const wall: number[] = [];
    const daemonPid = bigD.proc.pid ?? -1;
    const cpu0 = cpuMs(daemonPid);
    for (let round = 0; round < ROUNDS; round++) {
      wall.push(
        await withDeadline('500 concurrent unplugs', 120_000, () =>
          time(() =>
            Promise.all(
              vms
                .slice(0, CONCURRENT)
                .map((vm, i) =>
                  conns[i % CONNS]!.call('VM.hotunplugMemory', unplugParams(vm, vm.dimms[round]!)),
                ),
            ),
          ),
        ),
      );
    }
    const daemonCpuPerUnplug = (cpuMs(daemonPid) - cpu0) / (CONCURRENT * ROUNDS);
    const rssAfter = rssMiB(bigD.proc.pid ?? -1);
    const direct = summarize(await directConcurrentUnplugs(), 'ms');

    const s = summarize(startBig, 'ms');
    const se = summarize(startEmpty, 'ms');
    const st = summarize(statsMs, 'ms');
    const pg = summarize(pingMs, 'ms');
    const one = summarize(single, 'ms');
    const w = summarize(wall, 'ms');
    const ratioWall = w.median / one.median;
    return [
      {
        name: `scale start-up ${VMS} VMs x ${DIMMS} DIMMs`,
        what: 'spawn of the daemon to its "ready" log line (ms), vs the same daemon on a fake with no VMs',
        runs: START_RUNS,
        ours: s,
        baseline: { ...se, name: 'daemon, 0 VMs' },
        ratio: s.median / se.median,
        note: `${((s.median - se.median) / VMS).toFixed(2)} ms per VM`,
      },
      {
        name: `scale Host.getAllVmStats ${VMS} VMs`,
        what: `Host.getAllVmStats round trip (ms) with ${VMS} VMs x ${DIMMS} DIMMs, vs Host.ping on the same connection`,
        runs: STATS_CALLS,
        ours: st,
        baseline: { ...pg, name: 'Host.ping' },
        ratio: st.median / pg.median,
        target: 'median < 50 ms',
        pass: st.median < 50,
        note: `${Math.round(JSON.stringify(first).length / 1024)} KiB reply`,
      },
      {
        name: `scale ${CONCURRENT} concurrent unplugs`,
        what: `wall time (ms) of ${CONCURRENT} VM.hotunplugMemory on ${CONCURRENT} VMs sent at once over ${CONNS} connections, guests releasing after ${GUEST_RELEASE_MS} ms, vs one unplug alone`,
        runs: ROUNDS,
        ours: w,
        baseline: { ...one, name: 'one unplug' },
        ratio: ratioWall,
        target: 'ratio <= 3',
        pass: ratioWall <= 3,
        note: `${(w.median / CONCURRENT).toFixed(2)} ms per unplug; daemon CPU ${daemonCpuPerUnplug.toFixed(2)} ms per unplug`,
      },
      {
        name: `scale ${CONCURRENT} concurrent unplugs vs direct`,
        what: `the same ${CONCURRENT} concurrent unplugs through the daemon vs our libvirt client doing detach + wait for device-removed directly on an identical fake (what the fake and machine cost anyway)`,
        runs: ROUNDS,
        ours: w,
        baseline: { ...direct, name: 'direct client, no daemon' },
        ratio: w.median / direct.median,
        note: `daemon adds ${((w.median - direct.median) / CONCURRENT).toFixed(2)} ms per unplug of wall time`,
      },
      {
        name: `scale RSS idle, ${VMS} VMs`,
        what: 'VmRSS (MiB) of the daemon process after start-up and the stats calls, vs the daemon with no VMs',
        runs: 1,
        ours: { median: rssIdle, p99: rssIdle, unit: 'MiB' },
        baseline: { median: rssEmpty, p99: rssEmpty, unit: 'MiB', name: 'daemon, 0 VMs' },
        ratio: rssIdle / rssEmpty,
        target: '< 150 MiB',
        pass: rssIdle < 150,
      },
      {
        name: `scale RSS after ${CONCURRENT * ROUNDS} unplugs`,
        what: `VmRSS (MiB) of the daemon after ${ROUNDS} rounds of ${CONCURRENT} concurrent unplugs, vs the daemon with no VMs`,
        runs: 1,
        ours: { median: rssAfter, p99: rssAfter, unit: 'MiB' },
        baseline: { median: rssEmpty, p99: rssEmpty, unit: 'MiB', name: 'daemon, 0 VMs' },
        ratio: rssAfter / rssEmpty,
        target: '< 150 MiB',
        pass: rssAfter < 150,
      },
    ];
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all(daemons.map((d) => d.stop()));
    await Promise.all([big.stop(), empty.stop()]);
  }
}
