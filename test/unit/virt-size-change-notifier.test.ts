import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SizeChangeNotifier } from '../../src/virt/size-change-notifier.js';
import type { MemoryDeviceSizeChangedEvent } from '../../src/virt/types.js';

describe('SizeChangeNotifier', () => {
  let t = 0;
  let sent: [string, MemoryDeviceSizeChangedEvent][];
  let n: SizeChangeNotifier;
  const ev = (current: number, requested = 512, alias = 'ua-v') => ({ alias, requested, current });
  beforeEach(() => {
    vi.useFakeTimers();
    t = 0;
    sent = [];
    n = new SizeChangeNotifier(
      (vm, e) => sent.push([vm, e]),
      250,
      () => t,
    );
  });
  afterEach(() => vi.useRealTimers());
  const advance = (ms: number) => {
    t += ms;
    vi.advanceTimersByTime(ms);
  };

  it('sends the first move at once and folds the rest of the interval into one trailing notification', () => {
    n.report('vm1', ev(2));
    expect(sent).toEqual([['vm1', ev(2)]]);
    for (let i = 2; i <= 50; i++) {
      advance(2);
      n.report('vm1', ev(i * 2));
    }
    expect(sent).toHaveLength(1);
    advance(250);
    expect(sent).toEqual([
      ['vm1', ev(2)],
      ['vm1', ev(100)],
    ]);
  });

  it('keeps devices apart, drops repeats of what was sent, and flush sends a pending one now', () => {
    n.report('vm1', ev(2));
    n.report('vm1', ev(4, 512, 'ua-w'));
    n.report('vm1', ev(2));
    expect(sent).toHaveLength(2);
    advance(10);
    n.report('vm1', ev(6));
    n.flush('vm1', 'ua-v');
    expect(sent.at(-1)).toEqual(['vm1', ev(6)]);
    advance(1000);
    expect(sent).toHaveLength(3);
  });
});
