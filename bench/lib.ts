// Shared helpers for benches: the result shape every bench returns, and
// percentile/summary/table helpers. Each bench file exports
// `async function run(): Promise<BenchResult[]>`; bench/run.ts runs them all.

import { readFileSync } from 'node:fs';

export interface Stat {
  median: number;
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
}

/** Nearest-rank percentile of an ascending-sorted array (p in [0, 100]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: readonly number[], unit: string): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), p99: percentile(sorted, 99), unit };
}

/** For "higher is better" samples (throughput): the p99 field holds the slow-end (1st percentile) value. */
export function summarizeHigherIsBetter(samples: readonly number[], unit: string): Stat {
  const sorted = [...samples].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), p99: percentile(sorted, 1), unit };
}

export const round = (n: number, digits = 3): number => Number(n.toFixed(digits));

/** VmRSS of a process in MiB, from /proc/<pid>/status. */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
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

export function formatResults(results: readonly BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    String(r.runs),
    `${round(r.ours.median)} / ${round(r.ours.p99)} ${r.ours.unit}`,
    `${r.baseline.name}: ${round(r.baseline.median)} / ${round(r.baseline.p99)} ${r.baseline.unit}`,
    `${round(r.ratio, 2)}`,
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'PASS' : 'FAIL',
    r.note ?? '',
  ]);
  const head = ['bench', 'runs', 'ours median / p99', 'baseline median / p99', 'ratio', 'target', '', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
