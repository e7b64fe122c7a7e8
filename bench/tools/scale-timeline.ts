// Profiling aid (not a bench): when the answers of the scale bench's round of
// 500 concurrent unplugs arrive (ms after the first request was sent): first,
// quartiles and last, per round, after warm-up rounds on other VMs.
// usage: node --import tsx bench/tools/scale-timeline.ts [ROUNDS]
import { spawnDaemon, startFakeProcess, unplugParams } from '../fake-host.js';
import { cpuMs, selfCpuMs, waitQuiet } from '../lib.js';
import { LightRpc } from '../ws-load.js';

const rounds = Number(process.argv[2] ?? 3);
const N = 500;
const fake = await startFakeProcess({ vms: 2 * N, dimms: 8, eventDelayMs: 40, eventBeforeReply: true });
const d = await spawnDaemon(fake, { readyTimeoutMs: 180_000 });
const pid = d.proc.pid ?? -1;
const conns = await Promise.all(Array.from({ length: 8 }, () => LightRpc.connect(d.url)));
const q = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(1);
for (let r = 0; r < 2 + rounds; r++) {
  const vms = r < 2 ? fake.vms.slice(N) : fake.vms.slice(0, N);
  const dimm = r < 2 ? r : r - 2;
  const c0 = cpuMs(pid);
  const f0 = cpuMs(fake.pid);
  const s0 = selfCpuMs();
  const t0 = performance.now();
  const at: number[] = [];
  await Promise.all(
    vms.map((vm, i) =>
      conns[i % 8]!.call('VM.hotunplugMemory', unplugParams(vm, vm.dimms[dimm]!)).then(() =>
        at.push(performance.now() - t0),
      ),
    ),
  );
  const cpuToLast = cpuMs(pid) - c0;
  const fakeToLast = cpuMs(fake.pid) - f0;
  const clientToLast = selfCpuMs() - s0;
  await Promise.all([waitQuiet(pid), waitQuiet(fake.pid)]);
  at.sort((a, b) => a - b);
  console.log(
    `${r < 2 ? 'warm-up' : 'round'} ${r}: answers at first ${q(at, 0)}, p25 ${q(at, 0.25)}, p50 ${q(at, 0.5)}, p75 ${q(at, 0.75)}, last ${at.at(-1)!.toFixed(1)} ms; daemon CPU to the last answer ${cpuToLast.toFixed(0)} ms, in all ${(cpuMs(pid) - c0).toFixed(0)} ms; to the last answer the fake ${fakeToLast.toFixed(0)} ms, the clients (this process) ${clientToLast.toFixed(0)} ms`,
  );
}
for (const c of conns) c.close();
await d.stop();
await fake.stop();
