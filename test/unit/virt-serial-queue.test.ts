import { describe, expect, it } from 'vitest';
import { SerialQueue } from '../../src/virt/serial-queue.js';

function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

describe('SerialQueue', () => {
  it('never interleaves operations on one key, in submission order', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    const g = gate();
    const a = q.run('vm1', async () => {
      log.push('a-start');
      await g.promise;
      log.push('a-end');
      return 'a';
    });
    const b = q.run('vm1', async () => {
      log.push('b');
      return 'b';
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(log).toEqual(['a-start']);
    expect(q.pending('vm1')).toBe(2);
    g.open();
    expect(await Promise.all([a, b])).toEqual(['a', 'b']);
    expect(log).toEqual(['a-start', 'a-end', 'b']);
  });

  it('runs different keys in parallel', async () => {
    const q = new SerialQueue();
    const g = gate();
    const blocked = q.run('vm1', () => g.promise);
    let otherRan = false;
    await q.run('vm2', async () => {
      otherRan = true;
    });
    expect(otherRan).toBe(true);
    g.open();
    await blocked;
  });

  it('keeps going after a failed operation and drops idle workers', async () => {
    const q = new SerialQueue();
    const failed = q.run('vm1', async () => {
      throw new Error('boom');
    });
    const next = q.run('vm1', async () => 42);
    await expect(failed).rejects.toThrow('boom');
    expect(await next).toBe(42);
    await q.drain();
    expect(q.size).toBe(0);
    expect(q.pending('vm1')).toBe(0);
  });

  it('drain waits for everything queued', async () => {
    const q = new SerialQueue();
    const g = gate();
    let done = false;
    void q
      .run('k', () => g.promise)
      .then(() => {
        done = true;
      });
    const drained = q.drain();
    g.open();
    await drained;
    expect(done).toBe(true);
  });
});
