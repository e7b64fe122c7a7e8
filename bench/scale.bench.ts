// Scale on the fake libvirtd (its own process): 1,000 running VMs with 8
// hot-plugged DIMMs each, the daemon as a child process (compiled, plain node).
//  - start-up: spawn to the "ready" log line, vs the same daemon on a fake
//    with no VMs (the fixed cost of a start);
//  - Host.getAllVmStats latency, vs Host.ping on the same connection;
//  - 500 concurrent VM.hotunplugMemory on 500 VMs (8 connections, all sent
//    at once): wall time until the last answer, against the bare libvirt
//    client (ours, no daemon) doing the same 500 detach + wait for
//    device-removed on an identical fake, rounds alternating ABBA after two
//    untimed warm-up rounds each on the other 500 VMs; the fakes' guests release after
//    GUEST_RELEASE_MS, about what the real TCG guest takes for a 128 MiB DIMM;
//  - the same 500 through the protocol floor (bench/floor-relay.ts: a bare
//    `ws` JSON-RPC server doing only the call's wire contract) on a fourth
//    fake, one round after each ABBA pair: the share of the ratio no daemon
//    speaking this protocol can avoid;
//  - the daemon's CPU time (all threads, user + system) per unplug over
//    those rounds, vs the bare client's CPU per unplug; and the counts of
//    libvirt calls (by procedure) and daemon log lines per unplug;
//  - RSS of the daemon (/proc/<pid>/status) when idle and after the unplugs,
//    vs the daemon with no VMs.
// Goals (issue 12): getAllVmStats < 20 ms p50, 500 unplugs within 1.5x of
// the bare client, daemon CPU <= 0.5 ms per unplug, RSS < 150 MiB.

import { LibvirtClient } from '../src/libvirt/client.js';
import { TestRpcClient } from '../test/helpers/rpc-client.js';
import { bareUnplugger } from './bare-unplug.js';
import {
  type BenchDaemon,
  DIMM_MIB,
  type FakeProcess,
  type FakeVm,
  spawnDaemon,
  startFakeProcess,
  startFloorRelay,
  unplugParams,
} from './fake-host.js';
import {
  type BenchResult,
  cpuMs,
  rssMiB,
  selfCpuMs,
  single,
  summarize,
  waitQuiet,
  withDeadline,
} from './lib.js';
import { LightRpc } from './ws-load.js';

const VMS = 1000;
const DIMMS = 8;
const CONCURRENT = 500;
const CONNS = 8; // 500 / 8 stays under the per-connection in-flight cap (64)
const START_RUNS = 3;
const STATS_CALLS = 30;
const SINGLE_RUNS = 15;
// Rounds of 500 concurrent unplugs per side. The warm-up rounds run on the
// other 500 VMs, so the timed ones meet VMs with all their DIMMs (a VM's
// stats, notifications and metadata grow with its DIMMs) and a daemon whose
// hot path V8 has optimised, as in a daemon that has run for a while.
const WARMUP_ROUNDS = 2;
const TIMED_ROUNDS = 3;
const ROUNDS = WARMUP_ROUNDS + TIMED_ROUNDS;
const GUEST_RELEASE_MS = 40;

interface Round {
  wallMs: number;
  cpuMsPerUnplug: number;
  fakeCpuMsPerUnplug: number;
}

/** The bare libvirt client (ours, in this process): detach + wait for device-removed, 500 at once. */
async function directClient(
  fake: FakeProcess,
): Promise<{ round(vms: FakeVm[], dimm: number): Promise<Round>; close(): Promise<void> }> {
  const client = await LibvirtClient.connect({ socketPath: fake.socketPath, keepaliveIntervalMs: 0 });
  const removeDimm = bareUnplugger(client);
  const unplug = (vm: FakeVm, alias: string) => removeDimm(vm.ref, { alias, sizeMiB: DIMM_MIB, node: 0 });
  return {
    async round(vms, dimm) {
      const c0 = selfCpuMs();
      const f0 = cpuMs(fake.pid);
      const t0 = performance.now();
      await withDeadline('500 direct unplugs', 120_000, () =>
        Promise.all(vms.map((vm) => unplug(vm, vm.dimms[dimm]!))),
      );
      const wallMs = performance.now() - t0;
      await waitQuiet(fake.pid);
      return {
        wallMs,
        cpuMsPerUnplug: (selfCpuMs() - c0) / CONCURRENT,
        fakeCpuMsPerUnplug: (cpuMs(fake.pid) - f0) / CONCURRENT,
      };
    },
    close: () => client.close(),
  };
}

/**
 * A JSON-RPC server doing the same: 500 VM.hotunplugMemory at once over CONNS
 * light connections; the daemon, or the protocol floor (bench/floor-relay.ts).
 */
async function throughRpc(
  server: { url: string; pid: number; logLines(): number },
  fake: FakeProcess,
): Promise<{ round(vms: FakeVm[], dimm: number): Promise<Round & { logLines: number }>; close(): void }> {
  const conns = await Promise.all(Array.from({ length: CONNS }, () => LightRpc.connect(server.url)));
  const pid = server.pid;
  return {
    async round(vms, dimm) {
      const c0 = cpuMs(pid);
      const f0 = cpuMs(fake.pid);
      const l0 = server.logLines();
      const t0 = performance.now();
      const answers = await withDeadline('500 concurrent unplugs', 120_000, () =>
        Promise.all(
          vms.map((vm, i) =>
            conns[i % CONNS]!.call<{ status: string }>(
              'VM.hotunplugMemory',
              unplugParams(vm, vm.dimms[dimm]!),
            ),
          ),
        ),
      );
      const wallMs = performance.now() - t0;
      const bad = answers.find((a) => a.status !== 'removed');
      if (bad) throw new Error(`unplug answered ${JSON.stringify(bad)}`);
      // Work done after the answers (metadata writes, log output) is the unplugs' too.
      await Promise.all([waitQuiet(pid), waitQuiet(fake.pid)]);
      return {
        wallMs,
        cpuMsPerUnplug: (cpuMs(pid) - c0) / CONCURRENT,
        fakeCpuMsPerUnplug: (cpuMs(fake.pid) - f0) / CONCURRENT,
        logLines: (server.logLines() - l0) / CONCURRENT,
      };
    },
    close: () => {
      for (const c of conns) c.close();
    },
  };
}

async function timedStart(fake: FakeProcess): Promise<{ d: BenchDaemon; ms: number }> {
  const t0 = performance.now();
  const d = await spawnDaemon(fake, { readyTimeoutMs: 180_000 });
  return { d, ms: performance.now() - t0 };
}

export async function run(): Promise<BenchResult[]> {
  const releasing = { dimms: DIMMS, eventDelayMs: GUEST_RELEASE_MS, eventBeforeReply: true };
  const [big, twin, triplet, empty] = await Promise.all([
    startFakeProcess({ vms: VMS, ...releasing }),
    startFakeProcess({ vms: VMS, ...releasing }), // identical, for the bare client
    startFakeProcess({ vms: VMS, ...releasing }), // identical, for the protocol floor
    startFakeProcess({ vms: 0, dimms: 0 }),
  ]);
  const daemons: BenchDaemon[] = [];
  const closers: (() => unknown)[] = [];
  try {
    // Start-up, alternating; the last daemon of each kind stays for the rest.
    const startBig: number[] = [];
    const startEmpty: number[] = [];
    let bigD: BenchDaemon | undefined;
    let emptyD: BenchDaemon | undefined;
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
    closers.push(() => c.close());
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

    // One unplug alone (VMs past the first 500), then rounds of 500 at once.
    const single1: number[] = [];
    for (let i = 0; i < SINGLE_RUNS; i++) {
      const vm = big.vms[CONCURRENT + i]!;
      single1.push(await time(() => c.call('VM.hotunplugMemory', unplugParams(vm, vm.dimms[0]!))));
    }
    const daemonD = bigD;
    const ours = await throughRpc(
      { url: daemonD.url, pid: daemonD.proc.pid ?? -1, logLines: () => daemonD.logLines },
      big,
    );
    closers.push(() => ours.close());
    const bare = await directClient(twin);
    closers.push(() => bare.close());
    const shown = await c.call<unknown>('VM.getStats', { vmID: big.vms[0]!.uuid });
    const relay = await startFloorRelay(triplet, shown);
    closers.push(() => relay.close());
    const floorSide = await throughRpc({ url: relay.url, pid: relay.pid, logLines: () => 0 }, triplet);
    closers.push(() => floorSide.close());
    const o: (Round & { logLines: number })[] = [];
    const b: Round[] = [];
    const fl: Round[] = [];
    let rss1000 = 0;
    for (let r = 0; r < ROUNDS; r++) {
      // As before issue 12 (2 rounds): RSS after 1,000 + SINGLE_RUNS unplugs.
      if (r === WARMUP_ROUNDS) rss1000 = rssMiB(bigD.proc.pid ?? -1);
      // Warm-up: VMs 500-999 (the single unplugs took their first DIMM); timed: VMs 0-499.
      const warm = r < WARMUP_ROUNDS;
      const dimm = warm ? r + 1 : r - WARMUP_ROUNDS;
      const pick = (f: FakeProcess) =>
        warm ? f.vms.slice(CONCURRENT, 2 * CONCURRENT) : f.vms.slice(0, CONCURRENT);
      let x: Round & { logLines: number };
      let y: Round;
      if (r % 2 === 0) {
        x = await ours.round(pick(big), dimm);
        y = await bare.round(pick(twin), dimm);
      } else {
        y = await bare.round(pick(twin), dimm);
        x = await ours.round(pick(big), dimm);
      }
      // The floor between or after the pair, so it meets the same conditions.
      const z = await floorSide.round(pick(triplet), dimm);
      if (!warm) {
        o.push(x);
        b.push(y);
        fl.push(z);
      }
    }
    const rssAfter = rssMiB(bigD.proc.pid ?? -1);

    const s = summarize(startBig, 'ms');
    const se = summarize(startEmpty, 'ms');
    const st = summarize(statsMs, 'ms');
    const pg = summarize(pingMs, 'ms');
    const one = summarize(single1, 'ms');
    const w = summarize(
      o.map((x) => x.wallMs),
      'ms',
    );
    const wb = summarize(
      b.map((x) => x.wallMs),
      'ms',
    );
    const wf = summarize(
      fl.map((x) => x.wallMs),
      'ms',
    );
    const cpu = summarize(
      o.map((x) => x.cpuMsPerUnplug),
      'ms',
    );
    const cpuBare = summarize(
      b.map((x) => x.cpuMsPerUnplug),
      'ms',
    );
    const fakeOurs = summarize(
      o.map((x) => x.fakeCpuMsPerUnplug),
      'ms',
    ).median;
    const fakeBare = summarize(
      b.map((x) => x.fakeCpuMsPerUnplug),
      'ms',
    ).median;
    const lines = summarize(
      o.map((x) => x.logLines),
      'lines',
    ).median;
    const timedRounds = TIMED_ROUNDS;
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
        target: 'p50 < 20 ms',
        pass: st.median < 20,
        goal: '12',
        note: `${Math.round(JSON.stringify(first).length / 1024)} KiB reply`,
      },
      {
        name: `scale ${CONCURRENT} concurrent unplugs vs bare client`,
        what: `wall time (ms, to the last answer) of ${CONCURRENT} VM.hotunplugMemory on ${CONCURRENT} VMs sent at once over ${CONNS} connections vs our libvirt client alone doing the same ${CONCURRENT} detach + wait for device-removed on an identical fake; guests release after ${GUEST_RELEASE_MS} ms; ${timedRounds} rounds each after ${WARMUP_ROUNDS} warm-up, ABBA`,
        runs: timedRounds,
        ours: w,
        baseline: { ...wb, name: 'bare libvirt client' },
        ratio: w.median / wb.median,
        target: 'p50 ratio <= 1.5',
        pass: w.median / wb.median <= 1.5,
        goal: '12',
        note: `daemon adds ${((w.median - wb.median) / CONCURRENT).toFixed(2)} ms of wall per unplug; the protocol floor ${wf.median.toFixed(0)} ms (${(wf.median / wb.median).toFixed(2)}x); one unplug alone ${one.median.toFixed(1)} ms`,
      },
      {
        name: `scale ${CONCURRENT} concurrent unplugs, protocol floor`,
        what: `the same ${CONCURRENT} unplugs through bench/floor-relay.ts (a bare ws server doing only the wire contract: migration check, detach, wait, 2 notifications to every connection, reply) on a third identical fake, vs the bare libvirt client; ms to the last answer`,
        runs: timedRounds,
        ours: wf,
        baseline: { ...wb, name: 'bare libvirt client' },
        ratio: wf.median / wb.median,
        note: `the daemon is ${(w.median / wf.median).toFixed(2)}x the floor; floor CPU per unplug ${summarize(
          fl.map((x) => x.cpuMsPerUnplug),
          'ms',
        ).median.toFixed(3)} ms (daemon ${cpu.median.toFixed(3)})`,
      },
      {
        name: 'scale daemon CPU per unplug',
        what: `CPU time (user + system, all threads, ms) of the daemon process per unplug over each round of ${CONCURRENT} concurrent unplugs (until it is quiet again), vs the bare libvirt client's (this process) for the same ${CONCURRENT}`,
        runs: timedRounds,
        ours: cpu,
        baseline: { ...cpuBare, name: 'bare libvirt client' },
        ratio: cpu.median / cpuBare.median,
        target: 'p50 <= 0.5 ms',
        pass: cpu.median <= 0.5,
        goal: '12',
        note: `fake libvirtd CPU per unplug ${fakeOurs.toFixed(2)} ms (daemon's) vs ${fakeBare.toFixed(2)} ms (bare); ${lines} daemon log lines per unplug`,
      },
      {
        name: `scale RSS idle, ${VMS} VMs`,
        what: 'VmRSS (MiB) of the daemon process after start-up and the stats calls, vs the daemon with no VMs',
        runs: 1,
        ours: single(rssIdle, 'MiB'),
        baseline: { ...single(rssEmpty, 'MiB'), name: 'daemon, 0 VMs' },
        ratio: rssIdle / rssEmpty,
        target: '< 150 MiB',
        pass: rssIdle < 150,
        goal: '12',
      },
      {
        name: `scale RSS after ${CONCURRENT * 2 + SINGLE_RUNS} unplugs`,
        what: `VmRSS (MiB) of the daemon after 2 rounds of ${CONCURRENT} concurrent unplugs (as measured before issue 12), vs the daemon with no VMs; the note gives it after all ${ROUNDS} rounds (RSS is a high-water mark: V8 collects the old generation lazily)`,
        runs: 1,
        ours: single(rss1000, 'MiB'),
        baseline: { ...single(rssEmpty, 'MiB'), name: 'daemon, 0 VMs' },
        ratio: rss1000 / rssEmpty,
        target: '< 150 MiB',
        pass: rss1000 < 150,
        note: `${rssAfter.toFixed(1)} MiB after ${CONCURRENT * ROUNDS + SINGLE_RUNS} unplugs`,
        goal: '12',
      },
    ];
  } finally {
    for (const close of closers) await close();
    await Promise.all(daemons.map((d) => d.stop()));
    await Promise.all([big.stop(), twin.stop(), triplet.stop(), empty.stop()]);
  }
}
