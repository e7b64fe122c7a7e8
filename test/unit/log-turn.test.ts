// The daemon's logger hands the lines of one event-loop turn to its writer
// together, after the turn (src/log.ts): nothing is written while the turn
// runs, every line arrives in order, and flushLogger writes what the turn
// still holds even when it is called in the same turn (the exit paths).
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, droppedLogLines, flushLogger, MAX_PENDING_BYTES } from '../../src/log.js';

function fileLogger() {
  const path = join(mkdtempSync(join(tmpdir(), 'vmhostd-log-')), 'out.log');
  const fd = openSync(path, 'w');
  const log = createLogger({ level: 'info', pretty: false, fd });
  const lines = () =>
    readFileSync(path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
  return { log, lines, close: () => closeSync(fd) };
}

describe('the logger', () => {
  it('writes the lines of a turn after it, all of them, in order', async () => {
    const f = fileLogger();
    f.log.info('one');
    f.log.warn('two');
    f.log.debug('not at this level');
    f.log.error('three');
    expect(f.lines()).toEqual([]);
    expect(await flushLogger(f.log, 5000)).toBe(true);
    expect(f.lines()).toEqual(['one', 'two', 'three']);
    f.log.info('four');
    await new Promise((r) => setImmediate(r));
    expect(await flushLogger(f.log, 5000)).toBe(true);
    expect(f.lines()).toEqual(['one', 'two', 'three', 'four']);
    f.close();
  });

  it('flushLogger called in the same turn writes what the turn holds', async () => {
    const f = fileLogger();
    f.log.info('last words');
    const flushed = flushLogger(f.log, 5000);
    expect(await flushed).toBe(true);
    expect(f.lines()).toEqual(['last words']);
    f.close();
  });

  it('counts every line of a turn dropped while stdout does not take them', async () => {
    // A FIFO nobody reads: it takes 64 KiB, then every write gets EAGAIN.
    const path = join(mkdtempSync(join(tmpdir(), 'vmhostd-log-')), 'stalled');
    execFileSync('mkfifo', [path]);
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    const log = createLogger({ level: 'info', pretty: false, fd });
    const pad = 'x'.repeat(1000);
    // One turn that fits under the cap, then one that cannot fit: all its lines are lost, and counted.
    const fitting = Math.floor((MAX_PENDING_BYTES * 0.9) / 1100);
    for (let i = 0; i < fitting; i++) log.info({ pad }, 'kept');
    await new Promise((r) => setImmediate(r));
    expect(droppedLogLines(log)).toBe(0);
    const lost = Math.ceil((MAX_PENDING_BYTES * 0.2) / 1000);
    for (let i = 0; i < lost; i++) log.info({ pad }, 'lost');
    await new Promise((r) => setImmediate(r));
    expect(droppedLogLines(log)).toBe(lost);
    expect(await flushLogger(log, 200)).toBe(false);
    closeSync(fd);
  });
});
