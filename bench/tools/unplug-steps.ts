// Profiling aid (not a bench): N unplugs through the daemon on the fake, then
// the median time (ms since the operation started) of each logged step.
// usage: node --import tsx bench/tools/unplug-steps.ts [N] [--cpu-prof]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestRpcClient } from '../../test/helpers/rpc-client.js';
import { spawnDaemon, startFakeProcess, unplugParams } from '../fake-host.js';
import { summarize } from '../lib.js';

const n = Number(process.argv[2] ?? 40);
const prof = process.argv.includes('--cpu-prof');
const dir = mkdtempSync(join(tmpdir(), 'vmhostd-prof-'));
const fake = await startFakeProcess({
  vms: Math.ceil(n / 8),
  dimms: 8,
  eventDelayMs: 0,
  eventBeforeReply: true,
});
const vms = fake.vms;
const daemon = await spawnDaemon(fake, {
  keepLogs: true,
  ...(prof ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] } : {}),
});
const rpc = await TestRpcClient.connect(daemon.url);
const total: number[] = [];
for (let i = 0; i < n; i++) {
  const vm = vms[Math.floor(i / 8)]!;
  const t0 = performance.now();
  await rpc.call('VM.hotunplugMemory', unplugParams(vm, vm.dimms[i % 8]!));
  total.push(performance.now() - t0);
}
const steps = new Map<string, number[]>();
const add = (k: string, ms: number) => steps.set(k, [...(steps.get(k) ?? []), ms]);
for (const l of daemon.logs) {
  if (l.operation !== 'hotunplug') continue;
  // The final line of an unplug carries every step's time (`steps`); older daemons logged each step.
  if (l.steps) for (const [k, ms] of Object.entries(l.steps as Record<string, number>)) add(k, ms);
  else if (typeof l.durationMs === 'number') add(String(l.step), l.durationMs);
}
console.log(`client-side total p50 ${summarize(total, 'ms').median.toFixed(2)} ms`);
for (const [k, v] of steps) console.log(`${summarize(v, 'ms').median.toFixed(2).padStart(7)} ms  ${k}`);
const rpcLines = daemon.logs.filter((l) => l.method === 'VM.hotunplugMemory').slice(-2);
console.log(JSON.stringify(rpcLines));
await rpc.close();
await daemon.stop();
await fake.stop();
if (prof) console.log(`profile in ${dir}`);
