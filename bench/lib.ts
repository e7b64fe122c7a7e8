// Shared helpers for benches: the result shape every bench returns, and
// percentile/summary/table helpers. Each bench file exports
// `async function run(): Promise<BenchResult[]>`; bench/run.ts runs them all.

import { readdirSync, readFileSync } from 'node:fs';

export interface Stat {
  median: number;
  p90: number;
  p99: number;
  unit: string;
}

export interface BenchResult {
  name: string;
  /** What was measured, in a sentence (units and direction included). */
  what: string;
  runs: number;
  ours: Stat;
  baseline: Stat & { name: string };
  /** ours.median / baseline.median. */
  ratio: number;
  /** The goal, in words (e.g. "ratio <= 1.5"). */
  target?: string;
  pass?: boolean;
  /** A short extra fact shown in the table (e.g. the added cost in ms). */
  note?: string;
  /** Set on the rows that are goals of an issue (e.g. "12"): also listed in the closing goals table. */
  goal?: string;
}

/** Nearest-rank percentile of an ascending-sorted array (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: readonly number[], unit: string): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), unit };
}

/** For "higher is better" samples (throughput): p90/p99 hold the slow-end (10th/1st percentile) values. */
export function summarizeHigherIsBetter(samples: readonly number[], unit: string): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), p90: percentile(sorted, 10), p99: percentile(sorted, 1), unit };
}

/** A single measured value (RSS, a CPU total) as a Stat. */
export function single(value: number, unit: string): Stat {
  return { median: value, p90: value, p99: value, unit };
}

export const round = (n: number, digits = 3): number => Number(n.toFixed(digits));

/** VmRSS of a process in MiB, from /proc/<pid>/status. */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/**
 * CPU time (ms, user + system) a process's threads have used, summed from
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds; /proc/<pid>/stat counts in
 * 10 ms ticks, too coarse for a few hundred unplugs). Robust to load: time
 * spent waiting for a core does not count. Threads that exited drop out of
 * the sum, so measure across a span in which none do (node's are long-lived).
 */
export function cpuMs(pid: number): number {
  const t = threadCpuMs(pid);
  return t.main + t.others;
}

/**
 * cpuMs split into the process's main thread and its other threads (V8's
 * workers, libuv's pool; node names them all "node").
 */
export function threadCpuMs(pid: number): { main: number; others: number } {
  const out = { main: 0, others: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      if (Number(tid) === pid) out.main += ns / 1e6;
      else out.others += ns / 1e6;
    } catch {
      // the thread exited between the listing and the read
    }
  }
  return out;
}

/**
 * Waits until a process has gone quiet (under 0.5 ms of CPU in 100 ms), so
 * work it does after answering (fire-and-forget writes, log output) is
 * counted with what caused it; rejects after deadlineMs.
 */
export async function waitQuiet(pid: number, deadlineMs = 10_000): Promise<void> {
  const end = performance.now() + deadlineMs;
  let last = cpuMs(pid);
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = cpuMs(pid);
    if (now - last < 0.5) return;
    if (performance.now() > end) throw new Error(`process ${pid} still busy after ${deadlineMs} ms`);
    last = now;
  }
}

/** CPU time (ms, user + system) of this process so far. */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Runs fn, rejecting if it has not settled within ms (a bench must never hang). */
export async function withDeadline<T>(what: string, ms: number, fn: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([fn(), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const stat = (s: Stat): string =>
  s.median === s.p99 && s.median === s.p90
    ? `${round(s.median)} ${s.unit}`
    : `${round(s.median)} / ${round(s.p90)} / ${round(s.p99)} ${s.unit}`;

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

const verdict = (r: BenchResult): string => (r.pass === undefined ? '' : r.pass ? 'PASS' : 'FAIL');

export function formatResults(results: readonly BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    String(r.runs),
    stat(r.ours),
    `${r.baseline.name}: ${stat(r.baseline)}`,
    `${round(r.ratio, 2)}`,
    r.target ?? '',
    verdict(r),
    r.note ?? '',
  ]);
  const head = [
    'bench',
    'runs',
    'ours p50 / p90 / p99',
    'baseline p50 / p90 / p99',
    'ratio',
    'target',
    '',
    'note',
  ];
  return table(head, rows);
}

/** The goal rows of each issue, one line each: our figure, the same-run baseline, the ratio, the verdict. */
export function formatGoals(results: readonly BenchResult[]): string {
  const goals = results.filter((r) => r.goal !== undefined);
  if (goals.length === 0) return '';
  const rows = goals.map((r) => [
    `#${r.goal}`,
    r.target ?? '',
    verdict(r),
    r.name,
    stat(r.ours),
    `${r.baseline.name}: ${stat(r.baseline)}`,
    `${round(r.ratio, 2)}`,
    r.note ?? '',
  ]);
  return table(['issue', 'goal', '', 'bench', 'ours', 'baseline', 'ratio', 'note'], rows);
}
