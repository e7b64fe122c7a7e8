// Host.ping and VM.getStats through the FULL daemon (child process, on the
// fake libvirtd, logging at info), against a bare `ws` server in its own
// process answering the same JSON (bench/echo-server.ts): throughput with 16
// requests in flight per connection, and latency with one in flight per
// connection, over 1 and 16 connections. Runs alternate daemon / echo.
// Goals: Host.ping throughput at least the echo server's (issue 12),
// VM.getStats at least 70% of it (issues 4, 8).

import { TestRpcClient } from '../test/helpers/rpc-client.js';
import { addVms, FakeLibvirtd, spawnDaemon } from './fake-host.js';
import { type BenchResult, summarize, summarizeHigherIsBetter } from './lib.js';
import {
  closeSockets,
  latencies,
  openSockets,
  requestMaker,
  startEchoServer,
  throughput,
} from './ws-load.js';

const SAMPLE_MS = 1000;
const SAMPLES = 3;
const WINDOW = 16;

export async function run(): Promise<BenchResult[]> {
  const fake = await FakeLibvirtd.start();
  const [vm] = addVms(fake, 1, 8);
  const daemon = await spawnDaemon(fake);
  let echo: Awaited<ReturnType<typeof startEchoServer>> | undefined;
  try {
    const methods = [
      { method: 'Host.ping', params: undefined },
      { method: 'VM.getStats', params: { vmID: vm!.uuid } },
    ];
    // The echo server answers with exactly what the daemon answers.
    const c = await TestRpcClient.connect(daemon.url);
    const results: Record<string, string> = {};
    for (const m of methods) results[m.method] = JSON.stringify(await c.call(m.method, m.params));
    await c.close();
    echo = await startEchoServer(results);

    const out: BenchResult[] = [];
    for (const m of methods) {
      for (const conns of [1, 16]) {
        const rate = { ours: [] as number[], echo: [] as number[] };
        const lat = { ours: [] as number[], echo: [] as number[] };
        for (let i = 0; i < SAMPLES; i++) {
          for (const [url, key] of [
            [daemon.url, 'ours'],
            [echo.url, 'echo'],
          ] as const) {
            const sockets = await openSockets(url, conns);
            const next = requestMaker(m.method, m.params);
            rate[key].push(await throughput(sockets, next, SAMPLE_MS, WINDOW));
            lat[key].push(...(await latencies(sockets, next, SAMPLE_MS)));
            closeSockets(sockets);
          }
        }
        const ro = summarizeHigherIsBetter(rate.ours, 'req/s');
        const re = summarizeHigherIsBetter(rate.echo, 'req/s');
        const lo = summarize(lat.ours, 'ms');
        const le = summarize(lat.echo, 'ms');
        const rr = ro.median / re.median;
        const floor = m.method === 'Host.ping' ? 1.0 : 0.7;
        out.push({
          name: `daemon ${m.method} x${conns} conn throughput`,
          what: `${m.method} replies/s from the full daemon over ${conns} connection(s), ${WINDOW} in flight each, ${SAMPLES} samples of ${SAMPLE_MS} ms; p99 column = slowest sample (higher is better)`,
          runs: SAMPLES,
          ours: ro,
          baseline: { ...re, name: 'bare ws echo' },
          ratio: rr,
          target: `ratio >= ${floor.toFixed(1)}`,
          pass: rr >= floor,
          ...(m.method === 'Host.ping' ? { goal: '12' } : {}),
        });
        out.push({
          name: `daemon ${m.method} x${conns} conn latency`,
          what: `${m.method} round trip (ms) with one request in flight on each of ${conns} connection(s) (lower is better)`,
          runs: lat.ours.length,
          ours: lo,
          baseline: { ...le, name: 'bare ws echo' },
          ratio: lo.median / le.median,
          note: `+${((lo.median - le.median) * 1000).toFixed(0)} us at p50`,
        });
      }
    }
    return out;
  } finally {
    await echo?.close();
    await daemon.stop();
    await fake.stop();
  }
}
