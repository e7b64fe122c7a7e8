// Prints one plain closing line for the whole suite ("N passed, N failed,
// N skipped") from the JSON reports `npm test` writes, so a log reader sees
// the totals of both vitest runs at once.
import { existsSync, readFileSync } from 'node:fs';

const files = ['.cache/test-results/main.json', '.cache/test-results/disruptive.json'];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const f of files) {
  if (!existsSync(f)) continue;
  const r = JSON.parse(readFileSync(f, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + r.numTodoTests;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
