// Runs every bench/*.bench.ts (or those named on the command line) and prints
// a table; `--json` prints the raw results. Exit code 1 if any target failed.

import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type BenchResult, formatResults } from './lib.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const json = args.includes('--json');
const only = args.filter((a) => !a.startsWith('--'));
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

const all: BenchResult[] = [];
for (const f of files) {
  const mod = (await import(pathToFileURL(join(here, f)).href)) as { run?: () => Promise<BenchResult[]> };
  if (typeof mod.run !== 'function') continue;
  if (!json) console.error(`running ${f} ...`);
  all.push(...(await mod.run()));
}
console.log(json ? JSON.stringify(all, null, 2) : formatResults(all));
process.exitCode = all.some((r) => r.pass === false) ? 1 : 0;
