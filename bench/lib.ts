// Shared helpers for benches: the result shape every bench returns, and
// percentile/summary/table helpers. Each bench file exports
// `async function run(): Promise<BenchResult[]>`; bench/run.ts runs them all.

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

export function formatResults(results: readonly BenchResult[]): string {
  const rows = results.map((r) => [
    r.name,
    `${round(r.ours.median)} / ${round(r.ours.p99)} ${r.ours.unit}`,
    `${r.baseline.name}: ${round(r.baseline.median)} / ${round(r.baseline.p99)} ${r.baseline.unit}`,
    `${round(r.ratio, 2)}`,
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'PASS' : 'FAIL',
  ]);
  const head = ['bench', 'ours median / p99', 'baseline median / p99', 'ratio', 'target', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
