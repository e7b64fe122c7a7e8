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
// libvirtd deaths during the run (scripts/test.sh cuts them from the supervisor's
// crash log): a test that failed around one may have been hit by it.
const crashes = existsSync('.cache/test-results/libvirtd-crashes.log')
  ? readFileSync('.cache/test-results/libvirtd-crashes.log', 'utf8').split('\n').filter(Boolean)
  : [];
const deaths = crashes.filter((l) => l.includes('libvirtd died')).length;
if (crashes.length > 0) {
  console.log(`libvirtd died ${deaths} time(s) during the run and was restarted:`);
  for (const line of crashes) console.log(`  ${line}`);
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
