// The device lifecycle machine: single transitions, then properties over any
// interleaving of the events a real host produces (event before the detach
// reply, duplicated or lost events, re-reads that fail, resyncs after a
// reconnect, daemon restarts and VM stops in the middle).

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
  phaseOf,
} from '../../src/virt/device-lifecycle.js';
import { of, run, T0 } from '../helpers/lifecycle.js';

describe('device lifecycle transitions', () => {
  it('a call marks the device, which is unplugging until libvirt says it left or a re-read no longer lists it', () => {
    const s0 = deviceSet(['ua-a', 'ua-b']);
    const r = run(s0, { type: 'unplug-requested', alias: 'ua-a', since: T0 });
    expect(r.effects).toEqual([{ type: 'persist' }]);
    expect(phaseOf(r.state, 'ua-a')).toBe('unplugging');
    expect(marksOf(r.state)).toEqual([{ alias: 'ua-a', since: T0 }]);

    const removed = [
      { type: 'clamp-guaranteed' },
      { type: 'persist' },
      { type: 'publish' },
      { type: 'settle', alias: 'ua-a', answer: { kind: 'removed', late: false } },
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'removed', late: false } },
    ];
    const ev = run(r.state, { type: 'device-removed', alias: 'ua-a' });
    expect(ev.effects).toEqual([{ type: 'drop', alias: 'ua-a' }, ...removed]);
    const seen = run(r.state, { type: 'observed', present: ['ua-b'] });
    expect(seen.effects).toEqual(removed);
    for (const done of [ev, seen]) {
      expect(done.state.tracked.size).toBe(0);
      expect(done.state.present).toEqual(['ua-b']);
      expect(marksOf(done.state)).toEqual([]);
    }
  });

  it("carries the call's guaranteed memory to the removal", () => {
    const r = run(
      deviceSet(['ua-a']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0, guaranteed: 900 },
      { type: 'observed', present: [] },
    );
    expect(of(r.effects, 'clamp-guaranteed')).toEqual([{ type: 'clamp-guaranteed', requested: 900 }]);
  });

  it('refuses a second request, and one for an absent device, without changing state', () => {
    const s = run(deviceSet(['ua-a']), { type: 'unplug-requested', alias: 'ua-a', since: T0 }).state;
    const again = next(s, { type: 'unplug-requested', alias: 'ua-a', since: T0 });
    expect(again.state).toBe(s);
    expect(again.effects).toEqual([
      { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'already-unplugging' } },
    ]);
    const absent = next(s, { type: 'unplug-requested', alias: 'ua-x', since: T0 });
    expect(absent.effects).toEqual([
      { type: 'settle', alias: 'ua-x', answer: { kind: 'failed', reason: 'device-not-found' } },
    ]);
  });

  it('a rejection (detach error or event, whichever first) fails once and leaves the device plugged', () => {
    const s = run(deviceSet(['ua-a']), { type: 'unplug-requested', alias: 'ua-a', since: T0 }).state;
    for (const order of [
      [
        { type: 'detach-failed', alias: 'ua-a', reason: 'guest-rejected' },
        { type: 'removal-failed', alias: 'ua-a' },
      ],
      [
        { type: 'removal-failed', alias: 'ua-a' },
        { type: 'detach-failed', alias: 'ua-a', reason: 'guest-rejected' },
      ],
    ] as DeviceEvent[][]) {
      const r = run(s, ...order);
      expect(phaseOf(r.state, 'ua-a')).toBe('plugged');
      expect(of(r.effects, 'settle')).toEqual([
        { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'guest-rejected' } },
      ]);
      expect(of(r.effects, 'notify')).toEqual([
        { type: 'notify', alias: 'ua-a', outcome: { kind: 'failed', reason: 'guest-rejected' } },
      ]);
      expect(of(r.effects, 'persist')).toHaveLength(1);
    }
  });

  it('a failed metadata write answers the call and notifies nobody (the guest was never asked)', () => {
    const r = run(
      deviceSet(['ua-a']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0 },
      { type: 'mark-failed', alias: 'ua-a', reason: 'libvirt-error' },
    );
    expect(phaseOf(r.state, 'ua-a')).toBe('plugged');
    expect(of(r.effects, 'notify')).toEqual([]);
    expect(of(r.effects, 'settle')).toEqual([
      { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'libvirt-error' } },
    ]);
  });

  it('a timeout answers the call; the removal stays requested and is reported late', () => {
    const s = run(
      deviceSet(['ua-a']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0 },
      { type: 'detach-requested', alias: 'ua-a' },
    ).state;
    const t = run(s, { type: 'call-gave-up', alias: 'ua-a', why: 'timeout' });
    expect(of(t.effects, 'settle')).toEqual([
      { type: 'settle', alias: 'ua-a', answer: { kind: 'pending', why: 'timeout' } },
    ]);
    expect(phaseOf(t.state, 'ua-a')).toBe('unplugging');
    const late = run(t.state, { type: 'device-removed', alias: 'ua-a' }, { type: 'observed', present: [] });
    expect(of(late.effects, 'settle')).toEqual([]);
    expect(of(late.effects, 'notify')).toEqual([
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'removed', late: true } },
    ]);
  });

  it('device-removed for a requested device removes it at once, with no re-read: libvirt took it out of the live XML', () => {
    const s = run(deviceSet(['ua-a', 'ua-b']), {
      type: 'unplug-requested',
      alias: 'ua-a',
      since: T0,
      guaranteed: 900,
    }).state;
    const r = next(s, { type: 'device-removed', alias: 'ua-a' });
    expect(r.state.present).toEqual(['ua-b']);
    expect(r.state.tracked.size).toBe(0);
    expect(r.effects).toStrictEqual([
      { type: 'drop', alias: 'ua-a' },
      { type: 'clamp-guaranteed', requested: 900 },
      { type: 'persist' },
      { type: 'publish' },
      { type: 'settle', alias: 'ua-a', answer: { kind: 'removed', late: false } },
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'removed', late: false } },
    ]);
  });

  it('a re-read that still lists a device the call no longer waits for keeps it requested', () => {
    const r = run(
      deviceSet(['ua-a']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0 },
      { type: 'call-gave-up', alias: 'ua-a', why: 'timeout' },
      { type: 'observed', present: ['ua-a'] },
    );
    expect(of(r.effects, 'notify')).toEqual([]);
    expect(phaseOf(r.state, 'ua-a')).toBe('unplugging');
    // ...so a later rejection still counts.
    const rej = run(r.state, { type: 'removal-failed', alias: 'ua-a' });
    expect(phaseOf(rej.state, 'ua-a')).toBe('plugged');
  });

  it('a removal-failed or detach failure after device-removed is stale: the removal stands', () => {
    const r = run(
      deviceSet(['ua-a']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0 },
      { type: 'device-removed', alias: 'ua-a' },
      { type: 'removal-failed', alias: 'ua-a' },
      { type: 'detach-failed', alias: 'ua-a', reason: 'libvirt-error' },
      { type: 'observed', present: [] },
    );
    expect(of(r.effects, 'settle')).toEqual([
      { type: 'settle', alias: 'ua-a', answer: { kind: 'removed', late: false } },
    ]);
    expect(of(r.effects, 'notify')).toHaveLength(1);
  });

  it('re-adopting a boot keeps the waiting call of a device it already tracks', () => {
    const s = run(deviceSet(['ua-a']), { type: 'unplug-requested', alias: 'ua-a', since: T0 }).state;
    const r = run(
      s,
      { type: 'adopted', present: ['ua-a'], marks: [{ alias: 'ua-a', since: '2020-01-01T00:00:00.000Z' }] },
      { type: 'observed', present: [] },
    );
    expect(of(r.effects, 'settle')).toEqual([
      { type: 'settle', alias: 'ua-a', answer: { kind: 'removed', late: false } },
    ]);
  });

  it('restart recovery adopts the marks: gone ones are reported late, present ones stay unplugging', () => {
    const r = run(EMPTY, {
      type: 'adopted',
      present: ['ua-b'],
      marks: [
        { alias: 'ua-a', since: T0 },
        { alias: 'ua-b', since: T0 },
      ],
    });
    expect(of(r.effects, 'notify')).toEqual([
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'removed', late: true } },
    ]);
    expect(r.state.tracked.get('ua-b')).toMatchObject({ by: 'adopted', waiting: false });
    expect(marksOf(r.state)).toEqual([{ alias: 'ua-b', since: T0 }]);
  });

  it('the VM stopping fails a waiting call vm-gone and forgets every mark', () => {
    const s = run(
      deviceSet(['ua-a', 'ua-b']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0 },
      { type: 'unplug-requested', alias: 'ua-b', since: T0 },
      { type: 'call-gave-up', alias: 'ua-b', why: 'timeout' },
    ).state;
    const r = run(s, { type: 'vm-stopped' });
    expect(r.state.tracked.size).toBe(0);
    expect(r.state.present).toEqual([]);
    expect(of(r.effects, 'settle')).toEqual([
      { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'vm-gone' } },
    ]);
    expect(of(r.effects, 'notify')).toEqual([
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'failed', reason: 'vm-gone' } },
    ]);
    const boot = run(s, { type: 'booted', present: ['ua-a', 'ua-b'] });
    expect(boot.state.tracked.size).toBe(0);
    expect(of(boot.effects, 'persist')).toHaveLength(1);
  });

  it('events for devices nobody unplugs change nothing but ask for a re-read', () => {
    const s = deviceSet(['ua-a']);
    expect(next(s, { type: 'removal-failed', alias: 'ua-a' })).toEqual({ state: s, effects: [] });
    expect(next(s, { type: 'detach-failed', alias: 'ua-a', reason: 'libvirt-error' }).effects).toEqual([]);
    expect(next(s, { type: 'call-gave-up', alias: 'ua-a', why: 'timeout' }).effects).toEqual([]);
    expect(next(s, { type: 'detach-requested', alias: 'ua-a' }).effects).toEqual([]);
    expect(next(s, { type: 'mark-failed', alias: 'ua-a', reason: 'vm-gone' }).effects).toEqual([]);
    expect(next(s, { type: 'device-removed', alias: 'ua-a' }).effects).toEqual([{ type: 'reread' }]);
  });
});

describe('device lifecycle: exact effects and states', () => {
  const requested = (guaranteed?: number) =>
    run(deviceSet(['ua-a', 'ua-b']), {
      type: 'unplug-requested',
      alias: 'ua-a',
      since: T0,
      ...(guaranteed !== undefined ? { guaranteed } : {}),
    }).state;

  it('records who asked, when, and nothing it was not given', () => {
    expect(EMPTY).toStrictEqual({ present: [], tracked: new Map(), sizes: new Map() });
    expect(requested().tracked.get('ua-a')).toStrictEqual({
      phase: 'unplug-requested',
      since: T0,
      by: 'call',
      waiting: true,
      marked: true,
    });
    expect(requested(900).tracked.get('ua-a')).toMatchObject({ guaranteed: 900 });
    const adopted = next(EMPTY, {
      type: 'adopted',
      present: ['ua-a'],
      marks: [{ alias: 'ua-a', since: T0 }],
    });
    expect(adopted.state.tracked.get('ua-a')).toStrictEqual({
      phase: 'unplug-requested',
      since: T0,
      by: 'adopted',
      waiting: false,
      marked: true,
    });
    expect(adopted.effects).toStrictEqual([{ type: 'publish' }]);
    // A rejection after the restart still ends it.
    const rej = next(adopted.state, { type: 'removal-failed', alias: 'ua-a' });
    expect(phaseOf(rej.state, 'ua-a')).toBe('plugged');
  });

  it('each transition asks for exactly its effects', () => {
    const s = requested();
    // A sent detach is often answered within milliseconds: shown unplugging only if it lasts.
    expect(next(s, { type: 'detach-requested', alias: 'ua-a' }).effects).toStrictEqual([
      { type: 'publish', defer: true },
    ]);
    expect(next(s, { type: 'mark-failed', alias: 'ua-a', reason: 'vm-gone' }).effects).toStrictEqual([
      { type: 'publish' },
      { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'vm-gone' } },
    ]);
    expect(next(s, { type: 'removal-failed', alias: 'ua-a' }).effects).toStrictEqual([
      { type: 'persist' },
      { type: 'publish' },
      { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'guest-rejected' } },
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'failed', reason: 'guest-rejected' } },
    ]);
    const gaveUp = next(s, { type: 'call-gave-up', alias: 'ua-a', why: 'disconnected' });
    expect(gaveUp.effects).toStrictEqual([
      { type: 'publish' },
      { type: 'settle', alias: 'ua-a', answer: { kind: 'pending', why: 'disconnected' } },
    ]);
    expect(gaveUp.state.tracked.get('ua-a')).toStrictEqual({ ...s.tracked.get('ua-a'), waiting: false });
    // A re-read that changes nothing only publishes.
    expect(next(s, { type: 'observed', present: ['ua-a', 'ua-b'] }).effects).toStrictEqual([
      { type: 'publish' },
    ]);
    const stopped = next(s, { type: 'vm-stopped' });
    expect(stopped.effects[0]).toStrictEqual({ type: 'publish' });
    const booted = next(s, { type: 'booted', present: ['ua-a', 'ua-b'] });
    expect(booted.state.present).toEqual(['ua-a', 'ua-b']);
    expect(booted.effects.slice(0, 2)).toStrictEqual([{ type: 'persist' }, { type: 'publish' }]);
  });

  it('an unmarked request that fails has no mark to take back; events for untracked devices leave the state alone', () => {
    const s = run(deviceSet(['ua-a']), {
      type: 'unplug-requested',
      alias: 'ua-a',
      since: T0,
      mark: false,
    }).state;
    expect(next(s, { type: 'removal-failed', alias: 'ua-a' }).effects).toStrictEqual([
      { type: 'publish' },
      { type: 'settle', alias: 'ua-a', answer: { kind: 'failed', reason: 'guest-rejected' } },
      { type: 'notify', alias: 'ua-a', outcome: { kind: 'failed', reason: 'guest-rejected' } },
    ]);
    const plugged = deviceSet(['ua-a']);
    expect(next(plugged, { type: 'device-removed', alias: 'ua-a' }).state).toBe(plugged);
    // A second device-removed finds nothing requested: only a re-read.
    const removed = next(s, { type: 'device-removed', alias: 'ua-a' }).state;
    expect(next(removed, { type: 'device-removed', alias: 'ua-a' })).toStrictEqual({
      state: removed,
      effects: [{ type: 'reread' }],
    });
    // A device metadata listed, gone on restart and never requested: removed late, guaranteed clamped.
    const away = next(EMPTY, { type: 'adopted', present: [], marks: [], recorded: ['ua-x'] });
    expect(of(away.effects, 'clamp-guaranteed')).toStrictEqual([{ type: 'clamp-guaranteed' }]);
    expect(of(away.effects, 'notify')).toStrictEqual([
      { type: 'notify', alias: 'ua-x', outcome: { kind: 'removed', late: true } },
    ]);
  });

  it("a late removal clamps guaranteed memory without the call's request; a waiting call's removal without one asks for none", () => {
    const gaveUp = run(
      requested(900),
      { type: 'call-gave-up', alias: 'ua-a', why: 'timeout' },
      { type: 'observed', present: ['ua-b'] },
    );
    expect(of(gaveUp.effects, 'clamp-guaranteed')).toStrictEqual([{ type: 'clamp-guaranteed' }]);
    const plain = next(requested(), { type: 'observed', present: ['ua-b'] });
    expect(of(plain.effects, 'clamp-guaranteed')).toStrictEqual([{ type: 'clamp-guaranteed' }]);
  });

  it('device-removed ends only its own device: a late one is reported late, the others stay requested', () => {
    // ua-a: waiting, removed first. ua-b: waiting. ua-c: call gone.
    const s = run(
      deviceSet(['ua-a', 'ua-b', 'ua-c']),
      { type: 'unplug-requested', alias: 'ua-a', since: T0 },
      { type: 'unplug-requested', alias: 'ua-b', since: T0 },
      { type: 'unplug-requested', alias: 'ua-c', since: T0 },
      { type: 'call-gave-up', alias: 'ua-c', why: 'timeout' },
      { type: 'device-removed', alias: 'ua-a' },
    ).state;
    const r = next(s, { type: 'device-removed', alias: 'ua-c' });
    expect(r.effects).toStrictEqual([
      { type: 'drop', alias: 'ua-c' },
      { type: 'clamp-guaranteed' },
      { type: 'persist' },
      { type: 'publish' },
      { type: 'notify', alias: 'ua-c', outcome: { kind: 'removed', late: true } },
    ]);
    expect(r.state.present).toEqual(['ua-b']);
    expect(r.state.tracked.get('ua-b')).toBe(s.tracked.get('ua-b'));
  });
});

// ---- properties over a simulated host ----

const ALIASES = ['ua-0', 'ua-1', 'ua-2'] as const;

type Cmd =
  | { c: 'call'; a: number; markFails: boolean }
  | { c: 'release'; a: number; dup: boolean }
  | { c: 'reject'; a: number; viaDetach: boolean; viaEvent: boolean }
  | { c: 'deliver'; i: number }
  | { c: 'lose'; i: number }
  | { c: 'rereadFails'; i: number }
  | { c: 'timeout'; a: number }
  | { c: 'disconnect'; a: number }
  | { c: 'resync' }
  | { c: 'restart' }
  | { c: 'stop-and-boot' };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ c: fc.constant('call' as const), a: fc.nat(2), markFails: fc.boolean() }),
  fc.record({ c: fc.constant('release' as const), a: fc.nat(2), dup: fc.boolean() }),
  fc.record({
    c: fc.constant('reject' as const),
    a: fc.nat(2),
    viaDetach: fc.boolean(),
    viaEvent: fc.boolean(),
  }),
  fc.record({ c: fc.constant('deliver' as const), i: fc.nat(5) }),
  fc.record({ c: fc.constant('deliver' as const), i: fc.nat(5) }),
  fc.record({ c: fc.constant('lose' as const), i: fc.nat(5) }),
  fc.record({ c: fc.constant('rereadFails' as const), i: fc.nat(5) }),
  fc.record({ c: fc.constant('timeout' as const), a: fc.nat(2) }),
  fc.record({ c: fc.constant('disconnect' as const), a: fc.nat(2) }),
  fc.constant({ c: 'resync' as const }),
  fc.constant({ c: 'restart' as const }),
  fc.constant({ c: 'stop-and-boot' as const }),
);

/** libvirt-side news waiting to reach the daemon, in any order. */
type Pending = { kind: 'event'; e: DeviceEvent } | { kind: 'reread' };

class Host {
  /** DIMMs in the live XML. */
  truth = new Set<string>(ALIASES);
  /** Removals the guest was asked for and has not answered. */
  asked = new Set<string>();
  /** The marks libvirt holds in the domain's metadata (a write lands when the effect is carried out). */
  persisted: { alias: string; since: string }[] = [];
  queue: Pending[] = [];
  state: DeviceSet = deviceSet(ALIASES);
  /** Calls of this daemon run that wait for an answer, by alias. */
  open = new Map<string, number>();
  /** Answers per call id. */
  answers = new Map<number, string[]>();
  nextCall = 0;
  /** Calls that died with their daemon. */
  died = new Set<number>();
  /** Removed notifications per alias over the whole run. */
  removedNotes = new Map<string, number>();
  /** Aliases whose removal can no longer be reported (the VM's run ended while it was requested). */
  forgotten = new Set<string>();

  apply(e: DeviceEvent): void {
    const before = this.state;
    const t = next(this.state, e);
    this.state = t.state;
    const requested = (a: string) =>
      before.tracked.has(a) || (e.type === 'adopted' && e.marks.some((m) => m.alias === a));
    for (const eff of t.effects) this.effect(eff, requested);
  }

  private effect(eff: Effect, requested: (alias: string) => boolean): void {
    switch (eff.type) {
      case 'persist':
        this.persisted = marksOf(this.state);
        break;
      case 'reread':
        this.queue.push({ kind: 'reread' });
        break;
      case 'settle': {
        const id = this.open.get(eff.alias);
        expect(id, `settle for ${eff.alias} with no waiting call`).toBeDefined();
        this.answers.get(id!)!.push(eff.answer.kind);
        this.open.delete(eff.alias);
        break;
      }
      case 'notify':
        if (eff.outcome.kind === 'removed') {
          // Never for a DIMM still present, and at most once.
          expect(this.truth.has(eff.alias), `removal of present ${eff.alias} reported`).toBe(false);
          expect(this.state.present).not.toContain(eff.alias);
          this.removedNotes.set(eff.alias, (this.removedNotes.get(eff.alias) ?? 0) + 1);
          expect(this.removedNotes.get(eff.alias)).toBe(1);
          expect(requested(eff.alias)).toBe(true);
        } else if (eff.outcome.reason !== 'vm-gone') {
          // A failed unplug leaves the DIMM plugged.
          expect(this.truth.has(eff.alias)).toBe(true);
          expect(phaseOf(this.state, eff.alias)).toBe('plugged');
          expect(this.state.present).toContain(eff.alias);
        }
        break;
      case 'publish':
      case 'clamp-guaranteed':
      case 'drop':
        break;
    }
  }

  step(x: Cmd): void {
    switch (x.c) {
      case 'call': {
        const alias = ALIASES[x.a]!;
        if (this.open.has(alias)) return; // one call per device at a time (the operation queue)
        const id = this.nextCall++;
        this.answers.set(id, []);
        this.open.set(alias, id);
        const wasTracked = this.state.tracked.has(alias);
        const knownPresent = this.state.present.includes(alias);
        const marksBefore = this.persisted;
        this.apply({ type: 'unplug-requested', alias, since: T0 });
        if (wasTracked || !knownPresent) return; // refused at once
        if (x.markFails) {
          this.persisted = marksBefore;
          this.apply({ type: 'mark-failed', alias, reason: 'libvirt-error' });
          return;
        }
        if (this.truth.has(alias)) this.asked.add(alias);
        this.apply({ type: 'detach-requested', alias });
        return;
      }
      case 'release': {
        const alias = ALIASES[x.a]!;
        if (!this.asked.has(alias)) return;
        this.asked.delete(alias);
        this.truth.delete(alias);
        this.queue.push({ kind: 'event', e: { type: 'device-removed', alias } });
        if (x.dup) this.queue.push({ kind: 'event', e: { type: 'device-removed', alias } });
        return;
      }
      case 'reject': {
        const alias = ALIASES[x.a]!;
        if (!this.asked.has(alias)) return;
        this.asked.delete(alias);
        const viaDetach = x.viaDetach && this.open.has(alias);
        if (!viaDetach) {
          // The event alone, at any later time (or lost).
          this.queue.push({ kind: 'event', e: { type: 'removal-failed', alias } });
          return;
        }
        // libvirt 9 fails the detach and may also send the event; it comes
        // before the reply, so it cannot reach a later attempt.
        if (x.viaEvent) this.apply({ type: 'removal-failed', alias });
        this.apply({ type: 'detach-failed', alias, reason: 'guest-rejected' });
        return;
      }
      case 'deliver':
      case 'rereadFails':
      case 'lose': {
        if (this.queue.length === 0) return;
        const [p] = this.queue.splice(x.i % this.queue.length, 1);
        if (x.c === 'lose' || !p) return;
        if (p.kind === 'event') this.apply(p.e);
        else if (x.c === 'rereadFails')
          return; // the worker retries; a later read or resync answers
        else this.apply({ type: 'observed', present: [...this.truth] });
        return;
      }
      case 'timeout':
      case 'disconnect': {
        const alias = ALIASES[x.a]!;
        if (!this.open.has(alias)) return;
        this.apply({ type: 'call-gave-up', alias, why: x.c === 'timeout' ? 'timeout' : 'disconnected' });
        return;
      }
      case 'resync':
        this.apply({ type: 'observed', present: [...this.truth] });
        return;
      case 'restart': {
        // The daemon dies: its calls and the events in flight die with it.
        for (const id of this.open.values()) this.died.add(id);
        this.open.clear();
        this.queue = [];
        this.state = EMPTY;
        this.apply({ type: 'adopted', present: [...this.truth], marks: this.persisted });
        return;
      }
      case 'stop-and-boot': {
        for (const a of this.state.tracked.keys()) if (!this.truth.has(a)) this.forgotten.add(a);
        for (const a of this.persisted) if (!this.truth.has(a.alias)) this.forgotten.add(a.alias);
        this.asked.clear();
        this.queue = [];
        this.apply({ type: 'vm-stopped' });
        // Live metadata ends with the run.
        this.persisted = [];
        this.apply({ type: 'booted', present: [...this.truth] });
        return;
      }
    }
  }

  /** Every call gets its answer by its timeout at the latest, and libvirt finally answers. */
  finish(): void {
    for (const p of this.queue.splice(0)) if (p.kind === 'event') this.apply(p.e);
    this.apply({ type: 'observed', present: [...this.truth] });
    for (const alias of [...this.open.keys()]) this.apply({ type: 'call-gave-up', alias, why: 'timeout' });
  }
}

describe('device lifecycle properties', () => {
  it('for any interleaving: each call answered exactly once, each removal reported exactly once and never lost', () => {
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 40 }), (cmds) => {
        const h = new Host();
        for (const x of cmds) {
          h.step(x);
          // The device set never tracks a device the daemon does not believe present... unless a re-read is due.
          for (const a of h.state.tracked.keys()) {
            if (!h.state.present.includes(a)) throw new Error(`tracked ${a} not present`);
          }
        }
        h.finish();
        for (const [id, answers] of h.answers) {
          expect(answers, `call ${id}`).toHaveLength(h.died.has(id) ? 0 : 1);
        }
        // Never lost: every DIMM the guest released was reported removed, unless its VM run ended first.
        for (const a of ALIASES) {
          if (h.truth.has(a)) {
            expect(h.removedNotes.get(a) ?? 0).toBe(0);
          } else if (!h.forgotten.has(a)) {
            expect(h.removedNotes.get(a), `removal of ${a} lost`).toBe(1);
          }
        }
        // Nothing is left requested for a device that is gone, and the metadata agrees with the state.
        for (const a of h.state.tracked.keys()) expect(h.truth.has(a)).toBe(true);
        expect(h.persisted.map((m) => m.alias).sort()).toEqual([...h.state.tracked.keys()].sort());
      }),
      { numRuns: 2000 },
    );
  });

  it('a failed unplug leaves the DIMM plugged and unplugs it on a later try', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), (viaDetach, duplicateEvent) => {
        const h = new Host();
        h.step({ c: 'call', a: 0, markFails: false });
        h.step({ c: 'reject', a: 0, viaDetach, viaEvent: duplicateEvent || !viaDetach });
        h.finish();
        expect(phaseOf(h.state, 'ua-0')).toBe('plugged');
        expect(h.answers.get(0)).toEqual(['failed']);
        h.step({ c: 'call', a: 0, markFails: false });
        h.step({ c: 'release', a: 0, dup: duplicateEvent });
        h.step({ c: 'deliver', i: 0 });
        h.step({ c: 'deliver', i: 0 });
        h.finish();
        expect(h.answers.get(1)).toEqual(['removed']);
        expect(h.removedNotes.get('ua-0')).toBe(1);
      }),
    );
  });
});
