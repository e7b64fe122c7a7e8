// The daemon's logger hands the lines of one event-loop turn to its writer
// together, after the turn (src/log.ts): nothing is written while the turn
// runs, every line arrives in order, and flushLogger writes what the turn
// still holds even when it is called in the same turn (the exit paths).
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger, flushLogger } from '../../src/log.js';

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
});
