// The unplug that needs no metadata write before its detach (issue 12): when
// metadata already lists the DIMM as present, the request is not marked at
// first; a restart finds a removal by difference with that list; the mark is
// written once the request is still pending (mark-due) or the call stops
// waiting, so a restart shows it unplugging.

import { describe, expect, it } from 'vitest';
import {
  type DeviceEvent,
  deviceSet,
  type Effect,
  marksOf,
  phaseOf,
} from '../../src/virt/device-lifecycle.js';
import { buildMetadata, emptyMetadata, parseMetadata } from '../../src/virt/metadata.js';
import { run, T0 } from '../helpers/lifecycle.js';

const persists = (effects: Effect[]) => effects.filter((e) => e.type === 'persist').length;
const fast: DeviceEvent = { type: 'unplug-requested', alias: 'ua-a', since: T0, mark: false };

describe('unplug without a mark before the detach', () => {
  it('asks for no write; a quick removal costs one write, after the event', () => {
    const r = run(deviceSet(['ua-a', 'ua-b']), fast);
    expect(r.effects).toEqual([]);
    expect(phaseOf(r.state, 'ua-a')).toBe('unplugging');
    expect(marksOf(r.state)).toEqual([]);
    const done = run(
      r.state,
      { type: 'detach-requested', alias: 'ua-a' },
      { type: 'device-removed', alias: 'ua-a' },
      // The detach reply comes after the event: the device is gone, nothing to mark.
      { type: 'mark-due', alias: 'ua-a' },
      { type: 'observed', present: ['ua-b'] },
    );
    expect(persists(done.effects)).toBe(1);
    expect(done.effects).toContainEqual({
      type: 'settle',
      alias: 'ua-a',
      answer: { kind: 'removed', late: false },
    });
  });

  it('marks a request still pending once, and keeps the mark when the call gives up', () => {
    const r = run(
      deviceSet(['ua-a']),
      fast,
      { type: 'mark-due', alias: 'ua-a' },
      { type: 'mark-due', alias: 'ua-a' },
    );
    expect(persists(r.effects)).toBe(1);
    expect(marksOf(r.state)).toEqual([{ alias: 'ua-a', since: T0 }]);
    const gaveUp = run(deviceSet(['ua-a']), fast, { type: 'call-gave-up', alias: 'ua-a', why: 'timeout' });
    expect(persists(gaveUp.effects)).toBe(1);
    expect(marksOf(gaveUp.state)).toEqual([{ alias: 'ua-a', since: T0 }]);
    expect(phaseOf(gaveUp.state, 'ua-a')).toBe('unplugging');
  });

  it('a removal by event writes metadata once, listing no mark', () => {
    const r = run(deviceSet(['ua-a']), fast, { type: 'device-removed', alias: 'ua-a' });
    expect(persists(r.effects)).toBe(1);
    expect(marksOf(r.state)).toEqual([]);
    expect(r.state.present).toEqual([]);
  });

  it('a failure of an unmarked request writes nothing', () => {
    const r = run(deviceSet(['ua-a']), fast, {
      type: 'detach-failed',
      alias: 'ua-a',
      reason: 'guest-rejected',
    });
    expect(persists(r.effects)).toBe(0);
    expect(phaseOf(r.state, 'ua-a')).toBe('plugged');
    expect(r.effects).toContainEqual({
      type: 'settle',
      alias: 'ua-a',
      answer: { kind: 'failed', reason: 'guest-rejected' },
    });
  });

  it('after a restart, a listed DIMM that is gone was removed while we were away: late, once', () => {
    const r = run(deviceSet([]), {
      type: 'adopted',
      present: ['ua-b'],
      marks: [],
      recorded: ['ua-a', 'ua-b'],
    });
    expect(r.effects).toContainEqual({
      type: 'notify',
      alias: 'ua-a',
      outcome: { kind: 'removed', late: true },
    });
    expect(r.effects.filter((e) => e.type === 'notify')).toHaveLength(1);
    expect(persists(r.effects)).toBe(1);
    // A marked one is reported once too, not twice.
    const both = run(deviceSet([]), {
      type: 'adopted',
      present: [],
      marks: [{ alias: 'ua-a', since: T0 }],
      recorded: ['ua-a'],
    });
    expect(both.effects.filter((e) => e.type === 'notify')).toEqual([
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'removed', late: true } },
    ]);
  });

  it('metadata keeps the present list, empty or not, and stays readable without it', () => {
    const md = { ...emptyMetadata(), present: ['ua-a', 'dimm0'] };
    expect(parseMetadata(buildMetadata(md))).toEqual(md);
    expect(parseMetadata(buildMetadata({ ...emptyMetadata(), present: [] })).present).toEqual([]);
    expect(parseMetadata(buildMetadata(emptyMetadata())).present).toBeUndefined();
  });
});
