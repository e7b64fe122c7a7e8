// Test-only preload for a daemon child started with --expose-gc: on SIGUSR2 it
// runs full GCs and logs memory as a JSON line the test harness parses, so
// leak checks compare retained memory rather than where the GC happened to be.
// V8 returns freed pages to the OS from a background task after a GC, so the
// second collection (and the reading) comes a moment after the first.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  setTimeout(() => {
    globalThis.gc?.();
    const m = process.memoryUsage();
    process.stdout.write(
      `${JSON.stringify({ level: 30, msg: 'test-gc', rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, at: Date.now() })}\n`,
    );
  }, 500);
});
