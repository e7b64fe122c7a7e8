// The observer hooks' helpers: outcomes from results and errors, errors
// passed through unchanged, and an observer that throws kept harmless.
import { describe, expect, it } from 'vitest';
import { VirtError } from '../../src/virt/errors.js';
import {
  guardedObserver,
  type OperationInfo,
  observeDimm,
  observeOperation,
  outcomeOfError,
} from '../../src/virt/observer.js';

const noLog = { error: () => {} };

describe('operation observer helpers', () => {
  it('an error stands for its VirtError reason, anything else for "error"', () => {
    expect(outcomeOfError(new VirtError('hotunplug', 'guest-rejected', 'x'))).toBe('guest-rejected');
    expect(outcomeOfError(new Error('boom'))).toBe('error');
    expect(outcomeOfError('text')).toBe('error');
  });

  it('observeOperation reports start, then the outcome, and passes results and errors through', async () => {
    const seen: string[] = [];
    const obs = guardedObserver(
      {
        operationStarted: (op) => seen.push(`start ${op.operation}`),
        operationFinished: (op, outcome, ms) => {
          expect(ms).toBeGreaterThanOrEqual(0);
          seen.push(`end ${op.operation} ${outcome}`);
        },
      },
      noLog,
    );
    const op: OperationInfo = { operation: 'setMemory', vmId: 'v' };
    expect(
      await observeOperation(
        obs,
        op,
        async () => ({ failed: [1] }),
        (r) => (r.failed.length ? 'partial' : 'ok'),
      ),
    ).toEqual({ failed: [1] });
    const err = new VirtError('hotunplug', 'timeout', 'late');
    await expect(
      observeOperation(obs, { operation: 'hotunplug', vmId: 'v' }, () => Promise.reject(err)),
    ).rejects.toBe(err);
    expect(seen).toEqual([
      'start setMemory',
      'end setMemory partial',
      'start hotunplug',
      'end hotunplug timeout',
    ]);
  });

  it('observeDimm reports success or the reason with the time taken', async () => {
    const seen: [string, number][] = [];
    await observeDimm(
      (o, ms) => seen.push([o, ms]),
      'removed',
      async () => 1,
    );
    await expect(
      observeDimm(
        (o, ms) => seen.push([o, ms]),
        'removed',
        () => Promise.reject(new VirtError('hotunplug', 'vm-gone', 'x')),
      ),
    ).rejects.toThrow('x');
    expect(seen.map(([o]) => o)).toEqual(['removed', 'vm-gone']);
  });

  it('a throwing observer is logged, and the operation goes on', async () => {
    const logged: unknown[] = [];
    const obs = guardedObserver(
      {
        operationStarted: () => {
          throw new Error('observer bug');
        },
      },
      { error: (o) => logged.push(o) },
    );
    expect(await observeOperation(obs, { operation: 'hotplug', vmId: 'v' }, async () => 'done')).toBe('done');
    expect(logged).toEqual([expect.objectContaining({ callback: 'operationStarted' })]);
    // Missing callbacks are no-ops.
    obs.plugFinished({ vmId: 'v', alias: undefined, outcome: 'plugged', durationMs: 1 });
  });
});
