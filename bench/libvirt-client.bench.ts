// Our pure-TypeScript libvirt client against libvirt's own C library (through
// Debian's python3-libvirt, as VDSM uses it), in the same run, on the same
// real libvirtd: 2,000 getXMLDesc calls on one domain, sequential (latency)
// and with 32 in flight (throughput; python uses a 32-thread pool).

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type DomainRef, defaultSocketPath, LibvirtClient } from '../src/libvirt/index.js';
import { type BenchResult, summarize, summarizeHigherIsBetter } from './lib.js';

const CALLS = 2_000;
const IN_FLIGHT = 32;
const ROUNDS = 10;
const WARMUP = 2_000;
const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-libvirt
const here = dirname(fileURLToPath(import.meta.url));

// An inactive definition shaped like a test guest with two DIMMs: the XML is
// realistic and no QEMU process competes for the CPU during the bench.
function benchDomainXml(name: string, uuid: string): string {
  const dimm = (alias: string) =>
    `<memory model='dimm'><target><size unit='MiB'>256</size><node>0</node></target><alias name='${alias}'/></memory>`;
  return `<domain type='qemu'>
  <name>${name}</name><uuid>${uuid}</uuid>
  <maxMemory slots='16' unit='MiB'>8192</maxMemory>
  <memory unit='MiB'>1536</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model>
    <numa><cell id='0' cpus='0' memory='1024' unit='MiB'/></numa></cpu>
  <devices><memballoon model='none'/>${dimm('ua-bench-1')}${dimm('ua-bench-2')}</devices>
</domain>`;
}

async function sequential(client: LibvirtClient, dom: DomainRef): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await client.getXMLDesc(dom);
    out.push(performance.now() - t0);
  }
  return out;
}

/** Per-round throughput (calls/s) with IN_FLIGHT calls outstanding at all times. */
async function concurrent(client: LibvirtClient, dom: DomainRef): Promise<number[]> {
  const perRound = CALLS / ROUNDS;
  const out: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let issued = 0;
    const worker = async () => {
      while (issued < perRound) {
        issued++;
        await client.getXMLDesc(dom);
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    out.push(perRound / ((performance.now() - t0) / 1000));
  }
  return out;
}

export async function run(): Promise<BenchResult[]> {
  const client = await LibvirtClient.connect({ socketPath: defaultSocketPath() });
  const uuid = randomUUID();
  const dom = await client.defineXML(benchDomainXml(`vmhostd-bench-${uuid.slice(0, 8)}`, uuid));
  try {
    // Warm-up (both sides): we measure the steady state of a long-running daemon, after V8 has optimised the path.
    for (let i = 0; i < WARMUP; i++) await client.getXMLDesc(dom);
    const oursSeq = await sequential(client, dom);
    const oursConc = await concurrent(client, dom);
    const { stdout } = await promisify(execFile)(
      PYTHON,
      [
        join(here, 'libvirt_getxml.py'),
        'qemu:///system',
        uuid,
        String(CALLS),
        String(IN_FLIGHT),
        String(ROUNDS),
        String(WARMUP),
      ],
      { maxBuffer: 16 * 1024 * 1024, timeout: 300_000 },
    );
    const py = JSON.parse(stdout) as { seq_ms: number[]; conc_calls_per_s: number[] };

    const seqOurs = summarize(oursSeq, 'ms');
    const seqPy = summarize(py.seq_ms, 'ms');
    const concOurs = summarizeHigherIsBetter(oursConc, 'calls/s');
    const concPy = summarizeHigherIsBetter(py.conc_calls_per_s, 'calls/s');
    const seqRatio = seqOurs.median / seqPy.median;
    const concRatio = concOurs.median / concPy.median;
    return [
      {
        name: 'libvirt getXMLDesc sequential',
        what: `${CALLS} sequential getXMLDesc calls on one domain, per-call latency (lower is better)`,
        runs: CALLS,
        ours: seqOurs,
        baseline: { name: 'python3-libvirt', ...seqPy },
        ratio: seqRatio,
        target: 'ratio <= 1.5',
        pass: seqRatio <= 1.5,
      },
      {
        name: `libvirt getXMLDesc ${IN_FLIGHT} in flight`,
        what: `${CALLS} getXMLDesc calls with ${IN_FLIGHT} in flight (python: ${IN_FLIGHT}-thread pool), throughput per round of ${CALLS / ROUNDS}; p99 column = slowest-round (1st percentile) throughput (higher is better)`,
        runs: ROUNDS,
        ours: concOurs,
        baseline: { name: 'python3-libvirt', ...concPy },
        ratio: concRatio,
        target: 'ratio >= 1.0',
        pass: concRatio >= 1.0,
      },
    ];
  } finally {
    await client.undefine(dom).catch(() => undefined);
    await client.close();
  }
}
