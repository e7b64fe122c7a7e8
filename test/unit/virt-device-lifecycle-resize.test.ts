// The device lifecycle machine's `resizing` phase (virtio-mem): single
// transitions, then properties over any interleaving of what a real host
// produces (size moves read late, lost or twice, an
// operator's resize, the call's deadline and stall timers, daemon restarts
// with and without a mark, VM stops).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DeviceEvent,
  type DeviceSet,
  deviceSet,
  type Effect,
  EMPTY,
  marksOf,
  next,
  type OnResizeFailure,
  phaseOf,
  type ResizeAnswer,
  type ResizeMark,
  type ResizeOutcome,
  resizeMarksOf,
  type Sizes,
} from '../../src/virt/device-lifecycle.js';
import { of, run, T0 } from '../helpers/lifecycle.js';

const DL = '2026-12-01T00:02:00.000Z';

const at = (requested: number, current: number): Sizes => ({ requested, current });
const vm = (z: Sizes) => deviceSet(['ua-d'], new Map([['vm0', z]]));
const ask = (requested: number, onFailure: OnResizeFailure = 'settle'): DeviceEvent => ({
  type: 'resize-requested',
  alias: 'vm0',
  since: T0,
  requested,
  deadline: DL,
  onFailure,
});
const size = (requested: number, current: number): DeviceEvent => ({
  type: 'size-changed',
  alias: 'vm0',
  requested,
  current,
});

describe('resizing: transitions', () => {
  it('a call tracks the device resizing, unmarked; each move is progress; reaching requested answers the call, no notification', () => {
    const r = run(vm(at(0, 0)), ask(512));
    expect(r.effects).toStrictEqual([{ type: 'publish' }]);
    expect(phaseOf(r.state, 'vm0')).toBe('resizing');
    expect(r.state.tracked.get('vm0')).toStrictEqual({
      phase: 'resizing',
      since: T0,
      by: 'call',
      waiting: true,
      requested: 512,
      deadline: DL,
      onFailure: 'settle',
      marked: false,
    });
    expect(resizeMarksOf(r.state)).toEqual([]);
    expect(next(r.state, { type: 'resize-sent', alias: 'vm0' }).effects).toStrictEqual([{ type: 'reread' }]);

    const moving = run(r.state, size(512, 0), size(512, 128));
    expect(moving.effects).toStrictEqual([
      { type: 'publish' },
      { type: 'progress', alias: 'vm0', requested: 512, current: 0 },
      { type: 'publish' },
      { type: 'progress', alias: 'vm0', requested: 512, current: 128 },
    ]);
    // The same sizes read again change nothing.
    expect(next(moving.state, size(512, 128)).effects).toStrictEqual([]);

    const done = run(moving.state, size(512, 512));
    expect(done.effects).toStrictEqual([
      { type: 'progress', alias: 'vm0', requested: 512, current: 512 },
      { type: 'publish' },
      { type: 'resize-answer', alias: 'vm0', answer: { kind: 'resized' } },
    ]);
    expect(phaseOf(done.state, 'vm0')).toBe('plugged');
    expect(done.state.sizes.get('vm0')).toStrictEqual(at(512, 512));
  });

  it('a resize still pending is marked (once), and its mark says what a restart needs', () => {
    const r = run(vm(at(0, 0)), ask(512, 'keep'), { type: 'mark-due', alias: 'vm0' });
    expect(of(r.effects, 'persist')).toHaveLength(1);
    expect(resizeMarksOf(r.state)).toStrictEqual([
      { alias: 'vm0', since: T0, requested: 512, deadline: DL, onFailure: 'keep' },
    ]);
    expect(next(r.state, { type: 'mark-due', alias: 'vm0' }).effects).toStrictEqual([]);
    // Reaching the size clears it.
    const done = run(r.state, size(512, 512));
    expect(of(done.effects, 'persist')).toHaveLength(1);
    expect(resizeMarksOf(done.state)).toEqual([]);
  });

  it('the deadline or a stall makes the next re-read decide: short of requested, requested is settled there, then the call is told', () => {
    for (const why of ['timeout', 'stalled'] as const) {
      const s = run(vm(at(512, 512)), ask(0), size(0, 384)).state;
      const g = next(s, { type: 'resize-gave-up', alias: 'vm0', why });
      expect(g.effects).toStrictEqual([{ type: 'reread' }]);
      expect(g.state.tracked.get('vm0')).toMatchObject({ ending: why });
      // A second timer changes nothing.
      expect(next(g.state, { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' }).effects).toStrictEqual(
        [],
      );
      const end = next(g.state, size(0, 256));
      expect(end.effects).toStrictEqual([
        { type: 'progress', alias: 'vm0', requested: 0, current: 256 },
        { type: 'set-requested', alias: 'vm0', requested: 256 },
      ]);
      expect(end.state.tracked.get('vm0')).toMatchObject({
        requested: 256,
        waiting: true,
        settling: { why, asked: 0 },
      });
      expect(end.state.tracked.get('vm0')).not.toHaveProperty('deadline');
      // A read from before libvirt took it answers nothing yet.
      expect(of(next(end.state, size(0, 254)).effects, 'resize-answer')).toStrictEqual([]);
      const told = next(end.state, size(256, 256));
      expect(told.effects).toStrictEqual([
        { type: 'progress', alias: 'vm0', requested: 256, current: 256 },
        { type: 'publish' },
        {
          type: 'resize-answer',
          alias: 'vm0',
          answer: { kind: 'stopped', why, current: 256, requestedNow: 256 },
        },
      ]);
      expect(phaseOf(told.state, 'vm0')).toBe('plugged');
      // A refused settle: told with requested as it is, and the device shown moving (not ours).
      const refused = next(end.state, { type: 'settle-failed', alias: 'vm0' });
      expect(of(refused.effects, 'resize-answer')).toStrictEqual([
        {
          type: 'resize-answer',
          alias: 'vm0',
          answer: { kind: 'stopped', why, current: 256, requestedNow: 0 },
        },
      ]);
      expect(refused.state.tracked.get('vm0')).toMatchObject({ by: 'observed', requested: 0 });
    }
  });

  it('a settle that landed, then another requested before the re-read: the next re-read tells the end (fast-check counterexample)', () => {
    // Asked 64, stopped at 0 by the deadline, settled to 0; someone asked 64
    // again before the re-read, and the guest got there.
    const end = run(
      vm(at(0, 0)),
      ask(64),
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      size(64, 0),
    ).state;
    expect(end.tracked.get('vm0')).toMatchObject({ settling: { asked: 64 }, requested: 0 });
    // Before libvirt took it, a read with another requested is one from before the settle.
    expect(next(end, size(64, 64)).effects).not.toContainEqual(
      expect.objectContaining({ type: 'resize-answer' }),
    );
    const landed = next(end, { type: 'settle-landed', alias: 'vm0' });
    expect(landed.effects).toStrictEqual([{ type: 'reread' }]);
    expect(landed.state.tracked.get('vm0')).toMatchObject({ settling: { landed: true }, waiting: true });
    const told = next(landed.state, size(64, 64));
    expect(of(told.effects, 'resize-answer')).toStrictEqual([
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'timeout', current: 64, requestedNow: 64 },
      },
    ]);
    expect(phaseOf(told.state, 'vm0')).toBe('plugged');
    // Not settling (reached, or never asked): a landed settle changes nothing.
    for (const s of [run(vm(at(0, 0)), ask(64), size(64, 64)).state, run(vm(at(0, 0)), ask(64)).state]) {
      const t = next(s, { type: 'settle-landed', alias: 'vm0' });
      expect(t.state).toBe(s);
      expect(t.effects).toStrictEqual([]);
    }
  });

  it('a resize that ends short where someone else already set requested is told at once, with no settle (fast-check counterexample)', () => {
    // Asked 64, the deadline passed, and another client asked for 0, where the guest is.
    const s = run(vm(at(0, 0)), ask(64), { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' }).state;
    const t = next(s, size(0, 0));
    expect(of(t.effects, 'set-requested')).toStrictEqual([]);
    expect(of(t.effects, 'resize-answer')).toStrictEqual([
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'timeout', current: 0, requestedNow: 0 },
      },
    ]);
    expect(phaseOf(t.state, 'vm0')).toBe('plugged');
    // Stopped short of a requested still elsewhere, it settles as before.
    expect(of(next(s, size(64, 0)).effects, 'set-requested')).toStrictEqual([
      { type: 'set-requested', alias: 'vm0', requested: 0 },
    ]);
  });

  it('a re-read after the deadline that shows the size reached is a success', () => {
    const s = run(vm(at(0, 0)), ask(64), { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' }).state;
    const end = next(s, size(64, 64));
    expect(of(end.effects, 'resize-answer')).toStrictEqual([
      { type: 'resize-answer', alias: 'vm0', answer: { kind: 'resized' } },
    ]);
  });

  it('keep: the device stays resizing without a deadline, marked, and a late arrival is notified once', () => {
    const s = run(vm(at(512, 512)), ask(0, 'keep'), { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' });
    const end = next(s.state, size(0, 300));
    expect(of(end.effects, 'resize-answer')).toStrictEqual([
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'stalled', current: 300, requestedNow: 0 },
      },
    ]);
    expect(end.state.tracked.get('vm0')).toStrictEqual({
      phase: 'resizing',
      since: T0,
      by: 'call',
      waiting: false,
      requested: 0,
      onFailure: 'keep',
      marked: true,
    });
    expect(of(end.effects, 'persist')).toHaveLength(1);
    expect(resizeMarksOf(end.state)).toStrictEqual([
      { alias: 'vm0', since: T0, requested: 0, onFailure: 'keep' },
    ]);
    // No deadline: no timer can end it any more.
    expect(next(end.state, { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' }).effects).toStrictEqual(
      [],
    );
    const late = next(end.state, size(0, 0));
    expect(late.effects).toStrictEqual([
      { type: 'persist' },
      { type: 'publish' },
      { type: 'resize-notify', alias: 'vm0', outcome: { kind: 'resized', requested: 0, current: 0 } },
    ]);
    expect(phaseOf(late.state, 'vm0')).toBe('plugged');
  });

  it('a refused update answers libvirt-error and leaves the device as it was; unknown aliases and VM stops', () => {
    const r = run(vm(at(0, 0)), ask(64), { type: 'resize-failed', alias: 'vm0', reason: 'libvirt-error' });
    expect(of(r.effects, 'resize-answer')).toStrictEqual([
      { type: 'resize-answer', alias: 'vm0', answer: { kind: 'failed', reason: 'libvirt-error' } },
    ]);
    expect(phaseOf(r.state, 'vm0')).toBe('plugged');
    const unknown = next(vm(at(0, 0)), { ...ask(64), alias: 'vm9' } as DeviceEvent);
    expect(unknown.effects).toStrictEqual([
      { type: 'resize-answer', alias: 'vm9', answer: { kind: 'failed', reason: 'device-not-found' } },
    ]);
    const stop = run(vm(at(0, 0)), ask(64), { type: 'vm-stopped' });
    expect(of(stop.effects, 'resize-answer')).toStrictEqual([
      { type: 'resize-answer', alias: 'vm0', answer: { kind: 'failed', reason: 'vm-gone' } },
    ]);
    expect(of(stop.effects, 'resize-notify')).toStrictEqual([]);
    expect(stop.state.sizes.size).toBe(0);
  });

  it('a resize nobody asked us for (virsh) is shown resizing, unmarked, and ends without a notification', () => {
    const r = run(vm(at(128, 128)), size(130, 128));
    expect(phaseOf(r.state, 'vm0')).toBe('resizing');
    expect(r.state.tracked.get('vm0')).toMatchObject({ by: 'observed', waiting: false, marked: false });
    expect(next(r.state, { type: 'mark-due', alias: 'vm0' }).effects).toStrictEqual([]);
    expect(next(r.state, { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' }).effects).toStrictEqual([]);
    const done = next(r.state, size(130, 130));
    expect(done.effects).toStrictEqual([
      { type: 'progress', alias: 'vm0', requested: 130, current: 130 },
      { type: 'publish' },
    ]);
    expect(phaseOf(done.state, 'vm0')).toBe('plugged');
  });

  it('the first sight of a device reports no move; DIMM news leaves virtio-mem devices alone', () => {
    const first = next(deviceSet([]), size(0, 0));
    expect(first.effects).toStrictEqual([]);
    expect(first.state.sizes.get('vm0')).toStrictEqual(at(0, 0));
    const s = run(vm(at(0, 0)), ask(64)).state;
    // vm0 is not in the DIMM list, and a DIMM re-read must not take it for removed.
    const o = next(s, { type: 'observed', present: ['ua-d'] });
    expect(phaseOf(o.state, 'vm0')).toBe('resizing');
    expect(of(o.effects, 'notify')).toStrictEqual([]);
    expect(next(s, { type: 'unplug-requested', alias: 'vm0', since: T0 }).effects).toStrictEqual([
      { type: 'settle', alias: 'vm0', answer: { kind: 'failed', reason: 'device-not-found' } },
    ]);
    expect(next(s, { type: 'device-removed', alias: 'vm0' }).state).toBe(s);
    expect(next(s, { type: 'removal-failed', alias: 'vm0' }).state).toBe(s);
  });

  it('restart: a marked resize already there is reported late; one still moving is adopted with its deadline', () => {
    const mark: ResizeMark = { alias: 'vm0', since: T0, requested: 256, deadline: DL, onFailure: 'settle' };
    const there = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 256 }],
      resizeMarks: [mark],
    });
    expect(of(there.effects, 'resize-notify')).toStrictEqual([
      { type: 'resize-notify', alias: 'vm0', outcome: { kind: 'resized', requested: 256, current: 256 } },
    ]);
    expect(of(there.effects, 'persist').length).toBeGreaterThan(0);
    expect(resizeMarksOf(there.state)).toEqual([]);

    const moving = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 100 }],
      resizeMarks: [mark],
    });
    expect(moving.state.tracked.get('vm0')).toStrictEqual({
      phase: 'resizing',
      since: T0,
      by: 'adopted',
      waiting: false,
      requested: 256,
      deadline: DL,
      onFailure: 'settle',
      marked: true,
    });
    expect(resizeMarksOf(moving.state)).toStrictEqual([mark]);
    // Its stall, after the restart: settled at the true current, then notified late.
    const stalled = run(
      moving.state,
      { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
      size(256, 102),
      size(102, 102),
    );
    expect(of(stalled.effects, 'resize-notify')).toStrictEqual([
      {
        type: 'resize-notify',
        alias: 'vm0',
        outcome: { kind: 'stopped', reason: 'stalled', requested: 256, current: 102, requestedNow: 102 },
      },
    ]);
    expect(of(stalled.effects, 'set-requested')).toStrictEqual([
      { type: 'set-requested', alias: 'vm0', requested: 102 },
    ]);
    expect(of(stalled.effects, 'persist')).toHaveLength(1);
    expect(stalled.state.tracked.has('vm0')).toBe(false);
    expect(resizeMarksOf(stalled.state)).toEqual([]);
    // Kept: notified, requested left, still resizing (no deadline).
    const kept = run(
      next(EMPTY, {
        type: 'adopted',
        present: [],
        marks: [],
        virtio: [{ alias: 'vm0', requested: 256, current: 100 }],
        resizeMarks: [{ ...mark, onFailure: 'keep' }],
      }).state,
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      size(256, 100),
    );
    expect(of(kept.effects, 'resize-notify')).toStrictEqual([
      {
        type: 'resize-notify',
        alias: 'vm0',
        outcome: { kind: 'stopped', reason: 'timeout', requested: 256, current: 100, requestedNow: 256 },
      },
    ]);
    expect(of(kept.effects, 'set-requested')).toStrictEqual([]);
    expect(kept.state.tracked.get('vm0')).toMatchObject({ phase: 'resizing', marked: true });
    expect(kept.state.tracked.get('vm0')).not.toHaveProperty('deadline');
  });

  it('restart: a mark for a device that is gone is dropped; a device moving without a mark is only shown', () => {
    const gone = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [],
      resizeMarks: [{ alias: 'vm0', since: T0, requested: 2, onFailure: 'keep' }],
    });
    expect(gone.state.tracked.size).toBe(0);
    expect(of(gone.effects, 'persist')).toHaveLength(1);
    const unmarked = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 100 }],
    });
    expect(unmarked.state.tracked.get('vm0')).toMatchObject({ by: 'observed' });
    expect(of(unmarked.effects, 'progress')).toStrictEqual([]);
  });

  it('an adopted resize follows requested changed behind its back; a waiting call keeps its own', () => {
    const adopted = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 100 }],
      resizeMarks: [{ alias: 'vm0', since: T0, requested: 256, deadline: DL, onFailure: 'settle' }],
    }).state;
    const moved = next(adopted, size(100, 100));
    expect(of(moved.effects, 'resize-notify')).toStrictEqual([
      { type: 'resize-notify', alias: 'vm0', outcome: { kind: 'resized', requested: 100, current: 100 } },
    ]);
    const waiting = run(vm(at(0, 0)), ask(64), size(32, 0));
    expect(waiting.state.tracked.get('vm0')).toMatchObject({ requested: 64 });
  });

  it('a new call takes over a kept resize and its mark', () => {
    const kept = run(
      vm(at(512, 512)),
      ask(0, 'keep'),
      { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
      size(0, 300),
    ).state;
    const again = next(kept, ask(300));
    expect(again.state.tracked.get('vm0')).toMatchObject({
      by: 'call',
      waiting: true,
      requested: 300,
      marked: true,
    });
    expect(again.effects).toStrictEqual([{ type: 'persist' }, { type: 'publish' }]);
    // A second request while a call waits is not the machine's to take (the worker refuses it).
    expect(next(again.state, ask(2)).state).toBe(again.state);
  });

  it('a boot shows a device already moving, and ends any resize of the last run', () => {
    const s = run(vm(at(0, 0)), ask(64, 'keep'), { type: 'mark-due', alias: 'vm0' }).state;
    const b = next(s, { type: 'booted', present: [], virtio: [{ alias: 'vm0', requested: 64, current: 0 }] });
    expect(of(b.effects, 'resize-answer')).toStrictEqual([
      { type: 'resize-answer', alias: 'vm0', answer: { kind: 'failed', reason: 'vm-gone' } },
    ]);
    expect(b.state.tracked.get('vm0')).toMatchObject({ by: 'observed' });
    expect(resizeMarksOf(b.state)).toEqual([]);
    expect(b.effects[0]).toStrictEqual({ type: 'persist' });
  });
});

const REREAD_FAILED: DeviceEvent = { type: 'resize-reread-failed' };

// Behaviours the mutation run (Stryker) found no test for.
describe('resizing: edges', () => {
  it('unplug marks and resize marks never mix in metadata', () => {
    const r = run(vm(at(0, 0)), ask(64, 'keep'), { type: 'mark-due', alias: 'vm0' });
    expect(marksOf(r.state)).toStrictEqual([]);
    expect(resizeMarksOf(r.state)).toHaveLength(1);
    const u = run(vm(at(0, 0)), { type: 'unplug-requested', alias: 'ua-d', since: T0 });
    expect(resizeMarksOf(u.state)).toStrictEqual([]);
    expect(marksOf(u.state)).toStrictEqual([{ alias: 'ua-d', since: T0 }]);
  });

  it('restart: a mark never replaces a resize already tracked; a kept mark is adopted without a deadline', () => {
    const s = run(vm(at(0, 0)), ask(64)).state;
    const a = next(s, {
      type: 'adopted',
      present: ['ua-d'],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 0, current: 0 }],
      resizeMarks: [{ alias: 'vm0', since: T0, requested: 0, onFailure: 'keep' }],
    });
    expect(a.state.tracked.get('vm0')).toBe(s.tracked.get('vm0'));
    expect(of(a.effects, 'resize-notify')).toStrictEqual([]);

    const kept = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 100 }],
      resizeMarks: [{ alias: 'vm0', since: T0, requested: 256, onFailure: 'keep' }],
    });
    expect(kept.state.tracked.get('vm0')).toStrictEqual({
      phase: 'resizing',
      since: T0,
      by: 'adopted',
      waiting: false,
      requested: 256,
      onFailure: 'keep',
      marked: true,
    });
    expect(next(kept.state, { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' }).effects).toStrictEqual(
      [],
    );
  });

  it('restart: dropping a gone device’s mark and ending another resize cost one metadata write', () => {
    const a = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 256 }],
      resizeMarks: [
        { alias: 'vm0', since: T0, requested: 256, deadline: DL, onFailure: 'settle' },
        { alias: 'vm9', since: T0, requested: 2, onFailure: 'keep' },
      ],
    });
    expect(of(a.effects, 'persist')).toHaveLength(1);
    expect(of(a.effects, 'resize-notify')).toHaveLength(1);
    expect(resizeMarksOf(a.state)).toStrictEqual([]);
  });

  it('restart: a mark whose requested libvirt no longer asks follows it, and the mark is rewritten', () => {
    const a = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 200, current: 100 }],
      resizeMarks: [{ alias: 'vm0', since: T0, requested: 256, deadline: DL, onFailure: 'settle' }],
    });
    expect(of(a.effects, 'persist')).toHaveLength(1);
    expect(a.state.tracked.get('vm0')).toMatchObject({ by: 'adopted', requested: 200 });
    expect(resizeMarksOf(a.state)).toStrictEqual([
      { alias: 'vm0', since: T0, requested: 200, deadline: DL, onFailure: 'settle' },
    ]);
  });

  it('a marked resize settling keeps its request and deadline in the mark', () => {
    const s = run(
      vm(at(512, 512)),
      ask(0),
      { type: 'mark-due', alias: 'vm0' },
      size(0, 384),
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      size(0, 256),
    ).state;
    expect(s.tracked.get('vm0')).toMatchObject({ requested: 256, settling: { asked: 0, deadline: DL } });
    expect(resizeMarksOf(s)).toStrictEqual([
      { alias: 'vm0', since: T0, requested: 0, deadline: DL, onFailure: 'settle' },
    ]);
  });

  it('a read repeating the last sizes changes nothing and copies nothing: waiting, kept, or settling', () => {
    const moving = run(vm(at(0, 0)), ask(512), size(512, 128)).state;
    const again = next(moving, size(512, 128));
    expect(again.state).toBe(moving);
    expect(again.effects).toStrictEqual([]);
    const kept = run(
      vm(at(512, 512)),
      ask(0, 'keep'),
      { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
      size(0, 300),
    ).state;
    const k = next(kept, size(0, 300));
    expect(k.state).toBe(kept);
    expect(k.effects).toStrictEqual([]);
    const settling = run(
      vm(at(512, 512)),
      ask(0),
      size(0, 384),
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      size(0, 256),
    ).state;
    const st = next(settling, size(0, 256));
    expect(st.state).toBe(settling);
    expect(st.effects).toStrictEqual([]);
  });

  it('a move of a device nobody asked for: first read, or seen only at its end; a device first seen moving shows no move', () => {
    expect(next(vm(at(128, 128)), size(130, 128)).effects).toStrictEqual([
      { type: 'publish' },
      { type: 'progress', alias: 'vm0', requested: 130, current: 128 },
    ]);
    const end = next(vm(at(128, 128)), size(130, 130));
    expect(end.effects).toStrictEqual([
      { type: 'publish' },
      { type: 'progress', alias: 'vm0', requested: 130, current: 130 },
    ]);
    expect(end.state.tracked.size).toBe(0);
    // A device new to the VM (plugged by someone else), already moving: shown resizing, no move seen yet.
    const first = next(deviceSet([]), size(130, 128));
    expect(first.effects).toStrictEqual([{ type: 'publish' }]);
    expect(first.state.tracked.get('vm0')).toMatchObject({ by: 'observed', requested: 130 });
  });

  it('a marked resize moving toward its own request rewrites no mark; one following an outside request does', () => {
    const marked = run(vm(at(0, 0)), ask(512), { type: 'mark-due', alias: 'vm0' }).state;
    expect(next(marked, size(512, 128)).effects).toStrictEqual([
      { type: 'publish' },
      { type: 'progress', alias: 'vm0', requested: 512, current: 128 },
    ]);
    const adopted = next(EMPTY, {
      type: 'adopted',
      present: [],
      marks: [],
      virtio: [{ alias: 'vm0', requested: 256, current: 100 }],
      resizeMarks: [{ alias: 'vm0', since: T0, requested: 256, deadline: DL, onFailure: 'settle' }],
    }).state;
    const followed = next(adopted, size(200, 150));
    expect(followed.effects).toStrictEqual([
      { type: 'persist' },
      { type: 'publish' },
      { type: 'progress', alias: 'vm0', requested: 200, current: 150 },
    ]);
    expect(followed.state.tracked.get('vm0')).toMatchObject({ by: 'adopted', requested: 200 });
    expect(resizeMarksOf(followed.state)).toStrictEqual([
      { alias: 'vm0', since: T0, requested: 200, deadline: DL, onFailure: 'settle' },
    ]);
  });

  it('resize news naming a DIMM being unplugged leaves it alone (aliases are unique per domain, but the phases stay apart)', () => {
    const u = run(vm(at(0, 0)), { type: 'unplug-requested', alias: 'ua-d', since: T0 }).state;
    for (const e of [
      { type: 'resize-sent', alias: 'ua-d' },
      { type: 'resize-failed', alias: 'ua-d', reason: 'libvirt-error' },
      { type: 'resize-gave-up', alias: 'ua-d', why: 'timeout' },
      { type: 'settle-failed', alias: 'ua-d' },
      REREAD_FAILED,
    ] as const) {
      const t = next(u, e);
      expect(t.state).toBe(u);
      expect(t.effects).toStrictEqual([]);
    }
  });

  it('a refused update of a call that took over a marked resize clears the mark; the device shows moving, not ours', () => {
    const kept = run(
      vm(at(512, 512)),
      ask(0, 'keep'),
      { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
      size(0, 300),
    ).state;
    const r = run(kept, ask(300), { type: 'resize-failed', alias: 'vm0', reason: 'libvirt-error' });
    expect(r.effects.slice(-3)).toStrictEqual([
      { type: 'persist' },
      { type: 'publish' },
      { type: 'resize-answer', alias: 'vm0', answer: { kind: 'failed', reason: 'libvirt-error' } },
    ]);
    expect(resizeMarksOf(r.state)).toStrictEqual([]);
    expect(r.state.tracked.get('vm0')).toMatchObject({ by: 'observed', requested: 0, marked: false });
  });

  it("libvirt's late replies after the end change nothing: the update's, a refused update's, a refused settle's", () => {
    const stopped = run(vm(at(0, 0)), ask(64), { type: 'vm-stopped' }).state;
    for (const e of [
      { type: 'resize-sent', alias: 'vm0' },
      { type: 'resize-failed', alias: 'vm0', reason: 'vm-gone' },
      { type: 'settle-failed', alias: 'vm0' },
    ] as const) {
      const t = next(stopped, e);
      expect(t.state).toBe(stopped);
      expect(t.effects).toStrictEqual([]);
    }
    // Answered already (reached, or kept after its stop): a refused update tells nothing more.
    const reached = run(vm(at(0, 0)), ask(64), size(64, 64)).state;
    const kept = run(
      vm(at(512, 512)),
      ask(0, 'keep'),
      { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
      size(0, 300),
    ).state;
    for (const s of [reached, kept]) {
      const t = next(s, { type: 'resize-failed', alias: 'vm0', reason: 'libvirt-error' });
      expect(t.state).toBe(s);
      expect(t.effects).toStrictEqual([]);
    }
    // A settle libvirt reported refused after a read showed it taken: told once, already.
    const settled = run(
      vm(at(512, 512)),
      ask(0),
      size(0, 384),
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      size(0, 256),
      size(256, 256),
    ).state;
    const t = next(settled, { type: 'settle-failed', alias: 'vm0' });
    expect(t.state).toBe(settled);
    expect(t.effects).toStrictEqual([]);
    // Not settling: nothing to refuse.
    const moving = run(vm(at(0, 0)), ask(64), size(64, 32)).state;
    expect(next(moving, { type: 'settle-failed', alias: 'vm0' }).state).toBe(moving);
  });
});

describe('resizing: a re-read that fails after the wait ended (libvirt unreachable)', () => {
  it('answers the call with the sizes last read, unconfirmed; the device stays ending and marked; the next re-read settles and notifies late', () => {
    const g = run(vm(at(512, 512)), ask(0), size(0, 384), {
      type: 'resize-gave-up',
      alias: 'vm0',
      why: 'stalled',
    });
    const f = next(g.state, REREAD_FAILED);
    expect(f.effects).toStrictEqual([
      { type: 'persist' },
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'stalled', current: 384, requestedNow: 0, unconfirmed: true },
      },
    ]);
    expect(f.state.tracked.get('vm0')).toStrictEqual({
      phase: 'resizing',
      since: T0,
      by: 'call',
      waiting: false,
      requested: 0,
      deadline: DL,
      onFailure: 'settle',
      ending: 'stalled',
      marked: true,
    });
    // The mark a restart needs: it finds the deadline and settles again.
    expect(resizeMarksOf(f.state)).toStrictEqual([
      { alias: 'vm0', since: T0, requested: 0, deadline: DL, onFailure: 'settle' },
    ]);
    expect(f.state.sizes).toBe(g.state.sizes);
    // The worker's retries fail again: nothing more to tell.
    expect(next(f.state, REREAD_FAILED).state).toBe(f.state);
    expect(next(f.state, REREAD_FAILED).effects).toStrictEqual([]);
    // libvirt answers again: the settle, then its end, notified late with the true sizes.
    const back = next(f.state, size(0, 256));
    expect(back.effects).toStrictEqual([
      { type: 'progress', alias: 'vm0', requested: 0, current: 256 },
      { type: 'set-requested', alias: 'vm0', requested: 256 },
    ]);
    const end = next(back.state, size(256, 256));
    expect(end.effects).toStrictEqual([
      { type: 'progress', alias: 'vm0', requested: 256, current: 256 },
      { type: 'persist' },
      { type: 'publish' },
      {
        type: 'resize-notify',
        alias: 'vm0',
        outcome: { kind: 'stopped', reason: 'stalled', requested: 0, current: 256, requestedNow: 256 },
      },
    ]);
    expect(end.state.tracked.has('vm0')).toBe(false);
  });

  it('a resize that got there meanwhile is notified resized (late); a kept one is notified where it stopped and stays resizing', () => {
    const f = run(
      vm(at(512, 512)),
      ask(0, 'keep'),
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      REREAD_FAILED,
    );
    expect(of(f.effects, 'resize-answer')).toStrictEqual([
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'timeout', current: 512, requestedNow: 512, unconfirmed: true },
      },
    ]);
    expect(next(f.state, size(0, 0)).effects).toStrictEqual([
      { type: 'persist' },
      { type: 'publish' },
      { type: 'resize-notify', alias: 'vm0', outcome: { kind: 'resized', requested: 0, current: 0 } },
    ]);
    const short = next(f.state, size(0, 128));
    expect(of(short.effects, 'resize-notify')).toStrictEqual([
      {
        type: 'resize-notify',
        alias: 'vm0',
        outcome: { kind: 'stopped', reason: 'timeout', requested: 0, current: 128, requestedNow: 0 },
      },
    ]);
    expect(short.state.tracked.get('vm0')).toStrictEqual({
      phase: 'resizing',
      since: T0,
      by: 'call',
      waiting: false,
      requested: 0,
      onFailure: 'keep',
      marked: true,
    });
  });

  it('while settling: the settle is unconfirmed (requested as last read); its landing or refusal is notified late', () => {
    const s = run(
      vm(at(512, 512)),
      ask(0),
      { type: 'mark-due', alias: 'vm0' },
      size(0, 384),
      { type: 'resize-gave-up', alias: 'vm0', why: 'timeout' },
      size(0, 256),
    ).state;
    const f = next(s, REREAD_FAILED);
    // Marked already: the mark does not change, so no write.
    expect(f.effects).toStrictEqual([
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'timeout', current: 256, requestedNow: 0, unconfirmed: true },
      },
    ]);
    expect(f.state.tracked.get('vm0')).toStrictEqual({
      ...s.tracked.get('vm0'),
      waiting: false,
    });
    expect(resizeMarksOf(f.state)).toStrictEqual(resizeMarksOf(s));
    const landed = next(f.state, size(256, 256));
    expect(of(landed.effects, 'resize-notify')).toStrictEqual([
      {
        type: 'resize-notify',
        alias: 'vm0',
        outcome: { kind: 'stopped', reason: 'timeout', requested: 0, current: 256, requestedNow: 256 },
      },
    ]);
    expect(of(landed.effects, 'resize-answer')).toStrictEqual([]);
    const refused = next(f.state, { type: 'settle-failed', alias: 'vm0' });
    expect(of(refused.effects, 'resize-notify')).toStrictEqual([
      {
        type: 'resize-notify',
        alias: 'vm0',
        outcome: { kind: 'stopped', reason: 'timeout', requested: 0, current: 256, requestedNow: 0 },
      },
    ]);
  });

  it('touches nothing else: a call still within its wait, a kept or observed resize, an unplug, a VM with nothing tracked', () => {
    const cases: DeviceSet[] = [
      run(vm(at(0, 0)), ask(64)).state,
      run(vm(at(0, 0)), ask(64), size(64, 32)).state,
      run(
        vm(at(512, 512)),
        ask(0, 'keep'),
        { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
        size(0, 300),
      ).state,
      run(vm(at(128, 128)), size(130, 128)).state,
      run(vm(at(0, 0)), { type: 'unplug-requested', alias: 'ua-d', since: T0 }).state,
      run(
        vm(at(0, 0)),
        { type: 'unplug-requested', alias: 'ua-d', since: T0 },
        {
          type: 'call-gave-up',
          alias: 'ua-d',
          why: 'timeout',
        },
      ).state,
      vm(at(0, 0)),
      EMPTY,
    ];
    for (const s of cases) {
      const t = next(s, REREAD_FAILED);
      expect(t.state).toBe(s);
      expect(t.effects).toStrictEqual([]);
    }
  });

  it('answers every device whose wait ended, with one metadata write', () => {
    const two = deviceSet(
      [],
      new Map([
        ['vm0', at(512, 512)],
        ['vm1', at(512, 512)],
        ['vm2', at(0, 0)],
      ]),
    );
    const s = run(
      two,
      ask(0),
      { ...ask(256), alias: 'vm1' } as DeviceEvent,
      { ...ask(64), alias: 'vm2' } as DeviceEvent,
      { type: 'resize-gave-up', alias: 'vm0', why: 'stalled' },
      { type: 'resize-gave-up', alias: 'vm1', why: 'timeout' },
    ).state;
    const f = next(s, REREAD_FAILED);
    expect(f.effects).toStrictEqual([
      { type: 'persist' },
      {
        type: 'resize-answer',
        alias: 'vm0',
        answer: { kind: 'stopped', why: 'stalled', current: 512, requestedNow: 512, unconfirmed: true },
      },
      {
        type: 'resize-answer',
        alias: 'vm1',
        answer: { kind: 'stopped', why: 'timeout', current: 512, requestedNow: 512, unconfirmed: true },
      },
    ]);
    // vm2's call still waits within its deadline.
    expect(f.state.tracked.get('vm2')).toBe(s.tracked.get('vm2'));
    expect(resizeMarksOf(f.state).map((m) => m.alias)).toStrictEqual(['vm0', 'vm1']);
  });
});

// ---- properties over a simulated host ----

type Cmd =
  | { c: 'call'; to: number; keep: boolean; updateFails: boolean }
  | { c: 'guest' }
  | { c: 'stuck' }
  | { c: 'deliver'; i: number }
  | { c: 'lose'; i: number }
  /** A due re-read fails (libvirt unreachable); it stays due: the worker retries it. */
  | { c: 'readFails' }
  | { c: 'timer'; why: 'timeout' | 'stalled' }
  | { c: 'markDue' }
  | { c: 'settleLands'; fail: boolean }
  | { c: 'outside'; to: number }
  | { c: 'restart' }
  | { c: 'stop-and-boot' };

const mib = fc.nat(8).map((n) => n * 2);
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ c: fc.constant('call' as const), to: mib, keep: fc.boolean(), updateFails: fc.boolean() }),
  fc.constant({ c: 'guest' as const }),
  fc.constant({ c: 'guest' as const }),
  fc.constant({ c: 'guest' as const }),
  fc.constant({ c: 'stuck' as const }),
  fc.record({ c: fc.constant('deliver' as const), i: fc.nat(5) }),
  fc.record({ c: fc.constant('deliver' as const), i: fc.nat(5) }),
  fc.record({ c: fc.constant('lose' as const), i: fc.nat(5) }),
  fc.constant({ c: 'readFails' as const }),
  fc.record({
    c: fc.constant('timer' as const),
    why: fc.constantFrom('timeout' as const, 'stalled' as const),
  }),
  fc.constant({ c: 'markDue' as const }),
  fc.record({ c: fc.constant('settleLands' as const), fail: fc.boolean() }),
  fc.record({ c: fc.constant('outside' as const), to: mib }),
  fc.constant({ c: 'restart' as const }),
  fc.constant({ c: 'stop-and-boot' as const }),
);

class Host {
  /** The device in the live XML. */
  truth: Sizes = at(0, 0);
  /** The guest cannot shrink (unmovable pages). */
  stuck = false;
  /** Re-reads due (a size-change event, or one the machine asked for), in any order. */
  queue = 0;
  persisted: ResizeMark[] = [];
  state: DeviceSet = vm(at(0, 0));
  open: { id: number; requested: number } | undefined;
  answers = new Map<number, ResizeAnswer[]>();
  nextCall = 0;
  died = new Set<number>();
  notes: ResizeOutcome[] = [];
  /** set-requested calls under way. */
  settles: number[] = [];
  /** Calls answered unconfirmed whose end no notification told yet. */
  owed = new Set<number>();

  private apply(e: DeviceEvent): void {
    const t = next(this.state, e);
    this.state = t.state;
    for (const eff of t.effects) this.effect(eff);
  }

  private effect(eff: Effect): void {
    const z = this.state.sizes.get('vm0');
    switch (eff.type) {
      case 'persist':
        this.persisted = resizeMarksOf(this.state);
        break;
      case 'reread':
        this.queue++;
        break;
      case 'resize-answer': {
        expect(this.open, 'an answer with no waiting call').toBeDefined();
        const { id, requested } = this.open!;
        this.answers.get(id)!.push(eff.answer);
        if (eff.answer.kind === 'stopped' && eff.answer.unconfirmed) this.owed.add(id);
        // A success only once a re-read showed the size reached; a stop reports the size read.
        if (eff.answer.kind === 'resized') expect(z?.current).toBe(requested);
        if (eff.answer.kind === 'stopped') {
          expect(eff.answer.current).toBe(z?.current);
          expect(eff.answer.requestedNow).toBe(z?.requested);
        }
        this.open = undefined;
        break;
      }
      case 'resize-notify':
        // Only for a resize nobody waits for.
        expect(this.open).toBeUndefined();
        this.notes.push(eff.outcome);
        this.owed.clear();
        expect(eff.outcome.current).toBe(z?.current);
        if (eff.outcome.kind === 'stopped') expect(eff.outcome.requestedNow).toBe(z?.requested);
        break;
      case 'set-requested':
        expect(eff.requested).toBe(z?.current);
        this.settles.push(eff.requested);
        break;
      case 'progress':
        expect({ requested: eff.requested, current: eff.current }).toStrictEqual(z);
        break;
      case 'publish':
        break;
      default:
        throw new Error(`unexpected effect ${eff.type}`);
    }
  }

  private read(): void {
    this.apply({ type: 'size-changed', alias: 'vm0', ...this.truth });
  }

  step(x: Cmd): void {
    switch (x.c) {
      case 'call': {
        if (this.open) return; // one call at a time (the VM's operations are serial)
        // It takes over the device: the earlier resize's end is this call's now.
        this.owed.clear();
        const id = this.nextCall++;
        this.answers.set(id, []);
        this.open = { id, requested: x.to };
        this.apply({
          type: 'resize-requested',
          alias: 'vm0',
          since: T0,
          requested: x.to,
          deadline: DL,
          onFailure: x.keep ? 'keep' : 'settle',
        });
        if (x.updateFails) {
          this.apply({ type: 'resize-failed', alias: 'vm0', reason: 'libvirt-error' });
          return;
        }
        this.truth = { ...this.truth, requested: x.to };
        this.apply({ type: 'resize-sent', alias: 'vm0' });
        return;
      }
      case 'guest': {
        const { requested, current } = this.truth;
        if (current === requested || (this.stuck && requested < current)) return;
        this.truth = { requested, current: current + (requested > current ? 2 : -2) };
        this.queue++;
        return;
      }
      case 'stuck':
        this.stuck = !this.stuck;
        return;
      case 'deliver':
      case 'lose':
        // A lost one is an event that never came (a failed read is retried until one succeeds).
        if (this.queue === 0) return;
        this.queue--;
        if (x.c === 'deliver') this.read();
        return;
      case 'readFails': {
        if (this.queue === 0) return;
        this.apply({ type: 'resize-reread-failed' });
        // No call whose wait ended is left waiting on libvirt.
        const d = this.state.tracked.get('vm0');
        if (d?.phase === 'resizing') expect(d.waiting && (d.ending ?? d.settling)).toBeFalsy();
        return;
      }
      case 'timer': {
        const d = this.state.tracked.get('vm0');
        // The worker's timers run only for a resize with a deadline whose wait has not ended.
        if (d?.phase !== 'resizing' || d.deadline === undefined || d.ending) return;
        this.apply({ type: 'resize-gave-up', alias: 'vm0', why: x.why });
        return;
      }
      case 'markDue':
        this.apply({ type: 'mark-due', alias: 'vm0' });
        return;
      case 'settleLands': {
        const to = this.settles.shift();
        if (to === undefined) return;
        if (x.fail) {
          this.apply({ type: 'settle-failed', alias: 'vm0' });
          return;
        }
        // The update returned; the worker says so behind the reads under way (here: none).
        this.truth = { ...this.truth, requested: to };
        this.apply({ type: 'settle-landed', alias: 'vm0' });
        return;
      }
      case 'outside':
        this.truth = { ...this.truth, requested: x.to };
        this.queue++;
        return;
      case 'restart':
        if (this.open) this.died.add(this.open.id);
        this.open = undefined;
        this.queue = 0;
        // The mark (the answer made it) is adopted: the end is still told, late.
        this.settles = [];
        this.state = EMPTY;
        this.apply({
          type: 'adopted',
          present: ['ua-d'],
          marks: [],
          virtio: [{ alias: 'vm0', ...this.truth }],
          resizeMarks: this.persisted,
        });
        return;
      case 'stop-and-boot':
        // The VM's run ended: nobody is told how a resize of it ended.
        this.owed.clear();
        this.queue = 0;
        this.settles = [];
        this.apply({ type: 'vm-stopped' });
        this.persisted = [];
        this.apply({ type: 'booted', present: ['ua-d'], virtio: [{ alias: 'vm0', ...this.truth }] });
        return;
    }
  }

  /** The guest settles, the re-reads land, and a waiting call's deadline comes. */
  finish(): void {
    const settle = () => {
      while (this.settles.length) this.step({ c: 'settleLands', fail: false });
    };
    settle();
    this.stuck = false;
    for (let i = 0; i < 20 && this.truth.current !== this.truth.requested; i++) this.step({ c: 'guest' });
    this.queue = 0;
    this.read();
    this.step({ c: 'timer', why: 'timeout' });
    this.read();
    // The settle that asked for lands, and the re-read after it.
    settle();
    this.read();
  }
}

describe('resizing: properties', () => {
  it('for any interleaving: every call answered once, with the size read; the phase follows the sizes; marks equal the metadata', () => {
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 50 }), (cmds) => {
        const h = new Host();
        for (const x of cmds) {
          h.step(x);
          const z = h.state.sizes.get('vm0')!;
          // A device whose sizes differ is shown resizing (VmStats 'resizing' comes from here).
          if (z.current !== z.requested) expect(phaseOf(h.state, 'vm0')).toBe('resizing');
          const d = h.state.tracked.get('vm0');
          // (One answered unconfirmed stays ending: the next read decides, and the last may predate the request.)
          if (d?.phase === 'resizing' && !d.waiting && !d.ending) {
            expect(z.current === d.requested && z.requested === d.requested).toBe(false);
          }
        }
        h.finish();
        for (const [id, answers] of h.answers)
          expect(answers, `call ${id}`).toHaveLength(h.died.has(id) ? 0 : 1);
        expect(h.persisted).toStrictEqual(resizeMarksOf(h.state));
        // A call answered unconfirmed has its end told once libvirt could be read again.
        expect([...h.owed]).toEqual([]);
        // Once the guest got there and it was read, nothing is left resizing.
        expect(phaseOf(h.state, 'vm0')).toBe('plugged');
      }),
      { numRuns: 3000 },
    );
  });

  it('a marked resize whose daemon died is reported once it ends, late, exactly once', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.nat(6), fc.boolean(), (keep, moves, stall) => {
        const h = new Host();
        h.step({ c: 'call', to: 16, keep, updateFails: false });
        h.step({ c: 'markDue' });
        for (let i = 0; i < moves; i++) h.step({ c: 'guest' });
        h.step({ c: 'restart' });
        if (stall) {
          h.step({ c: 'timer', why: 'stalled' });
          h.step({ c: 'deliver', i: 0 });
          h.step({ c: 'settleLands', fail: false });
          h.step({ c: 'deliver', i: 0 });
        }
        h.finish();
        // The guest moved at most 12 of 16 MiB before the restart: a stall after it stops it short.
        const kinds = h.notes.map((n) => n.kind);
        expect(kinds).toEqual(!stall ? ['resized'] : keep ? ['stopped', 'resized'] : ['stopped']);
        expect(h.persisted).toEqual([]);
      }),
    );
  });
});
