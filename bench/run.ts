// Runs every bench/*.bench.ts (or those named on the command line), prints
// one table and writes the results as JSON to bench/results/latest.json;
// `--json` prints the JSON instead of the table. A bench that throws is
// reported and the others still run. Exit code 1 if any target failed or
// any bench threw.

import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type BenchResult, formatGoals, formatResults } from './lib.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const json = args.includes('--json');
const only = args.filter((a) => !a.startsWith('--'));
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

const started = new Date();
const loadBefore = loadavg();
const all: BenchResult[] = [];
const errors: { file: string; error: string }[] = [];
const seconds: Record<string, number> = {};
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { run?: () => Promise<BenchResult[]> };
  if (typeof mod.run !== 'function') continue;
  if (!json) console.error(`running ${f} ...`);
  const t0 = performance.now();
  try {
    all.push(...(await mod.run()));
  } catch (err) {
    const error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    errors.push({ file: f, error });
    console.error(`${f} failed: ${error}`);
  }
  seconds[f] = Math.round((performance.now() - t0) / 100) / 10;
}

const report = {
  started: started.toISOString(),
  node: process.version,
  cpus: cpus().length,
  // Other engineers share this machine: the load says how quiet the run was.
  loadavgBefore: loadBefore,
  loadavgAfter: loadavg(),
  secondsPerBench: seconds,
  results: all,
  errors,
};
const outDir = join(here, 'results');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
if (json) {
  console.log(JSON.stringify(report, null, 2));
} else {
  console.log(formatResults(all));
  const goals = formatGoals(all);
  if (goals) console.log(`\nGoals:\n${goals}`);
  console.log(
    `\nload average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${report.loadavgAfter.map((l) => l.toFixed(2)).join(' ')}; seconds per bench ${JSON.stringify(seconds)}`,
  );
  if (errors.length) console.log(`FAILED to run: ${errors.map((e) => e.file).join(', ')}`);
}
process.exitCode = all.some((r) => r.pass === false) || errors.length > 0 ? 1 : 0;
