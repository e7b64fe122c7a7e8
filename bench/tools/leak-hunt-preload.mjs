// Preload for the daemon child of bench/tools/leak-hunt.ts (needs --expose-gc):
// on SIGUSR2 it collects fully, writes a V8 heap snapshot into
// $LEAK_HUNT_DIR and logs a JSON line with the file and memory figures.
// The pause before the snapshot lets fire-and-forget work (metadata writes)
// finish, so the snapshot shows what is retained, not what is in flight.
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';

let n = 0;
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  setTimeout(() => {
    globalThis.gc?.();
    const m = process.memoryUsage();
    const dir = process.env.LEAK_HUNT_DIR;
    const file = dir ? writeHeapSnapshot(join(dir, `heap-${++n}.heapsnapshot`)) : null;
    process.stdout.write(
      `${JSON.stringify({ level: 30, msg: 'leak-hunt-snapshot', file, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers })}\n`,
    );
  }, 500);
});
