// The lifecycle of a VM's memory devices as a pure state machine
// (docs/design.md, "Device lifecycle"). Every source of news about a device
// (the unplug call, libvirt's device events, the VM stopping, the call's
// timeout, a re-read of the live XML after a reconnect or a restart) is an
// event; `next` returns the new state and the effects to carry out, as data.
// A removal is decided by libvirt's device-removed event for a requested
// device (libvirt sends it once the device left the live definition), or by
// a re-read of the live XML that no longer lists it.
// The VM's worker (vm-worker.ts) is the only caller, so the state has one
// owner and every outcome is decided in one place.

/** Who asked for the removal: a call of ours, or a mark found in metadata after a restart. */
export type UnplugOrigin = 'call' | 'adopted';

/** A device whose removal was requested and not yet answered. */
export interface UnplugRequested {
  readonly phase: 'unplug-requested';
  /** ISO time of the request (kept in metadata). */
  readonly since: string;
  readonly by: UnplugOrigin;
  /** A call awaits this device's outcome (false once it gave up, or after a restart). */
  readonly waiting: boolean;
  /** Guaranteed memory (MiB) the waiting call asked for once the device is gone. */
  readonly guaranteed?: number;
  /**
   * The request is kept in metadata (a mark). A call whose device the last
   * metadata write listed as present needs none at first: a restart finds a
   * removal by difference. It is marked once it is still pending a while
   * later (`mark-due`), or when the call stops waiting, so a restart shows
   * the device unplugging.
   */
  readonly marked: boolean;
}

/**
 * A device that is not simply `plugged`. New phases (virtio-mem's resizing)
 * join this union; see docs/design.md for how to add one.
 */
export type TrackedDevice = UnplugRequested;

export interface DeviceSet {
  /** Aliases in the live XML, as last read. A present alias not in `tracked` is plugged. */
  readonly present: readonly string[];
  readonly tracked: ReadonlyMap<string, TrackedDevice>;
}

export type FailReason =
  | 'guest-rejected'
  | 'vm-gone'
  | 'libvirt-error'
  | 'device-not-found'
  | 'already-unplugging';

/** How a removal ended: the device is gone, or it is plugged again. */
export type Terminal =
  | { readonly kind: 'removed'; readonly late: boolean }
  | { readonly kind: 'failed'; readonly reason: FailReason };

/** What a waiting call is told: a terminal outcome, or that it stopped waiting while the removal stays requested. */
export type Answer = Terminal | { readonly kind: 'pending'; readonly why: 'timeout' | 'disconnected' };

export type DeviceEvent =
  /** The unplug call, before its metadata write and detach. */
  | {
      readonly type: 'unplug-requested';
      readonly alias: string;
      readonly since: string;
      readonly guaranteed?: number;
      /** Write the mark before the detach (default); false when metadata already lists the device as present. */
      readonly mark?: boolean;
    }
  /** The request is still pending a while after it was made (or its detach returned): mark it now (not once released). */
  | { readonly type: 'mark-due'; readonly alias: string }
  /** Recording the request in metadata failed: the guest was never asked. */
  | { readonly type: 'mark-failed'; readonly alias: string; readonly reason: 'libvirt-error' | 'vm-gone' }
  /** The detach request is on its way (the mark is durable). */
  | { readonly type: 'detach-requested'; readonly alias: string }
  /** The detach call failed, classified by the call. */
  | {
      readonly type: 'detach-failed';
      readonly alias: string;
      readonly reason: 'guest-rejected' | 'libvirt-error' | 'vm-gone';
    }
  /** The call stops waiting; the removal stays requested. */
  | { readonly type: 'call-gave-up'; readonly alias: string; readonly why: 'timeout' | 'disconnected' }
  /**
   * libvirt's device-removed event (may come before the detach reply, twice,
   * or never): a requested device is removed at once; any other alias is
   * checked by a re-read (an outside detach, or an alias we do not know).
   */
  | { readonly type: 'device-removed'; readonly alias: string }
  /** libvirt's device-removal-failed event. */
  | { readonly type: 'removal-failed'; readonly alias: string }
  /** A re-read of the live XML: after an event, a reconnect's resync, or any reload. */
  | { readonly type: 'observed'; readonly present: readonly string[] }
  /** Restart recovery: a boot we did not see, with the marks its metadata holds. */
  | {
      readonly type: 'adopted';
      readonly present: readonly string[];
      readonly marks: readonly { readonly alias: string; readonly since: string }[];
      /** The devices metadata listed as present when last written: the ones gone were removed while we were away. */
      readonly recorded?: readonly string[];
    }
  /** The VM started a new boot. */
  | { readonly type: 'booted'; readonly present: readonly string[] }
  /** The VM stopped (or is gone). */
  | { readonly type: 'vm-stopped' };

export type Effect =
  /** Write the VM's metadata (its marks are `marksOf(state)`). */
  | { readonly type: 'persist' }
  /** Rebuild the VM's stats, notifying if they changed. */
  | { readonly type: 'publish' }
  /** Answer the call waiting on this device. */
  | { readonly type: 'settle'; readonly alias: string; readonly answer: Answer }
  /** Tell clients how a removal ended. */
  | { readonly type: 'notify'; readonly alias: string; readonly outcome: Terminal }
  /** A device left: lower guaranteed memory to the new size (or to what the call asked). */
  | { readonly type: 'clamp-guaranteed'; readonly requested?: number }
  /** Re-read the live XML; its result comes back as `observed` (a failed read is retried by the worker). */
  | { readonly type: 'reread' }
  /** libvirt removed this DIMM from the live definition: take it out of the cached domain too (first). */
  | { readonly type: 'drop'; readonly alias: string };

export interface Transition {
  readonly state: DeviceSet;
  readonly effects: readonly Effect[];
}

export const EMPTY: DeviceSet = { present: [], tracked: new Map() };

export function deviceSet(present: readonly string[]): DeviceSet {
  return { present: [...present], tracked: new Map() };
}

/** The marks to keep in metadata: every requested removal that is marked. */
export function marksOf(s: DeviceSet): { alias: string; since: string }[] {
  return [...s.tracked].filter(([, d]) => d.marked).map(([alias, d]) => ({ alias, since: d.since }));
}

export function phaseOf(s: DeviceSet, alias: string): 'plugged' | 'unplugging' {
  return s.tracked.has(alias) ? 'unplugging' : 'plugged';
}

function without(m: ReadonlyMap<string, TrackedDevice>, alias: string): Map<string, TrackedDevice> {
  const out = new Map(m);
  out.delete(alias);
  return out;
}

function withDevice(
  m: ReadonlyMap<string, TrackedDevice>,
  alias: string,
  d: TrackedDevice,
): Map<string, TrackedDevice> {
  return new Map(m).set(alias, d);
}

const unchanged = (state: DeviceSet): Transition => ({ state, effects: [] });

/** The device is plugged again: bookkeeping, the call's answer, the clients' notification. */
function failed(s: DeviceSet, alias: string, d: TrackedDevice, reason: FailReason): Transition {
  // An unmarked request left nothing in metadata to take back.
  const effects: Effect[] = d.marked ? [{ type: 'persist' }, { type: 'publish' }] : [{ type: 'publish' }];
  if (d.waiting) effects.push({ type: 'settle', alias, answer: { kind: 'failed', reason } });
  effects.push({ type: 'notify', alias, outcome: { kind: 'failed', reason } });
  return { state: { ...s, tracked: without(s.tracked, alias) }, effects };
}

/** A fresh view of the live XML: a requested device missing from it is removed. */
function observe(s: DeviceSet, present: readonly string[], recorded: readonly string[] = []): Transition {
  const here = new Set(present);
  const tracked = new Map<string, TrackedDevice>();
  const effects: Effect[] = [];
  const answers: Effect[] = [];
  // Listed by metadata, gone now, never requested that we know of: removed while we were away.
  for (const alias of recorded) {
    if (here.has(alias) || s.tracked.has(alias)) continue;
    effects.push({ type: 'clamp-guaranteed' });
    answers.push({ type: 'notify', alias, outcome: { kind: 'removed', late: true } });
  }
  for (const [alias, d] of s.tracked) {
    if (here.has(alias)) {
      tracked.set(alias, d);
      continue;
    }
    effects.push(clampFor(d));
    answers.push(...removalAnswers(alias, d));
  }
  if (answers.length) effects.push({ type: 'persist' });
  effects.push({ type: 'publish' }, ...answers);
  return { state: { present: [...present], tracked }, effects };
}

/** A requested device is gone: guaranteed memory follows what its call asked, or the new size. */
function clampFor(d: TrackedDevice): Effect {
  return d.waiting && d.guaranteed !== undefined
    ? { type: 'clamp-guaranteed', requested: d.guaranteed }
    : { type: 'clamp-guaranteed' };
}

function removalAnswers(alias: string, d: TrackedDevice): Effect[] {
  const notify: Effect = { type: 'notify', alias, outcome: { kind: 'removed', late: !d.waiting } };
  return d.waiting ? [{ type: 'settle', alias, answer: { kind: 'removed', late: false } }, notify] : [notify];
}

/** libvirt said a requested device left the live definition: removed, with no re-read. */
function removedByEvent(s: DeviceSet, alias: string, d: TrackedDevice): Transition {
  return {
    state: { present: s.present.filter((a) => a !== alias), tracked: without(s.tracked, alias) },
    effects: [
      { type: 'drop', alias },
      clampFor(d),
      { type: 'persist' },
      { type: 'publish' },
      ...removalAnswers(alias, d),
    ],
  };
}

/** Every tracked device ends with the VM's run: a waiting call fails vm-gone. */
function endRun(s: DeviceSet, present: readonly string[]): Transition {
  const effects: Effect[] = [{ type: 'publish' }];
  for (const [alias, d] of s.tracked) {
    if (!d.waiting) continue;
    const outcome = { kind: 'failed', reason: 'vm-gone' } as const;
    effects.push({ type: 'settle', alias, answer: outcome }, { type: 'notify', alias, outcome });
  }
  return { state: { present: [...present], tracked: new Map() }, effects };
}

export function next(s: DeviceSet, e: DeviceEvent): Transition {
  switch (e.type) {
    case 'unplug-requested': {
      const refuse = (reason: FailReason): Transition => ({
        state: s,
        effects: [{ type: 'settle', alias: e.alias, answer: { kind: 'failed', reason } }],
      });
      if (!s.present.includes(e.alias)) return refuse('device-not-found');
      if (s.tracked.has(e.alias)) return refuse('already-unplugging');
      const marked = e.mark !== false;
      const d: UnplugRequested = {
        phase: 'unplug-requested',
        since: e.since,
        by: 'call',
        waiting: true,
        marked,
        ...(e.guaranteed !== undefined ? { guaranteed: e.guaranteed } : {}),
      };
      return {
        state: { ...s, tracked: withDevice(s.tracked, e.alias, d) },
        effects: marked ? [{ type: 'persist' }] : [],
      };
    }
    case 'mark-due': {
      const d = s.tracked.get(e.alias);
      if (!d || d.marked) return unchanged(s);
      return {
        state: { ...s, tracked: withDevice(s.tracked, e.alias, { ...d, marked: true }) },
        effects: [{ type: 'persist' }],
      };
    }
    case 'mark-failed': {
      const d = s.tracked.get(e.alias);
      if (!d?.waiting) return unchanged(s);
      return {
        state: { ...s, tracked: without(s.tracked, e.alias) },
        effects: [
          { type: 'publish' },
          { type: 'settle', alias: e.alias, answer: { kind: 'failed', reason: e.reason } },
        ],
      };
    }
    case 'detach-requested':
      return s.tracked.get(e.alias)?.waiting ? { state: s, effects: [{ type: 'publish' }] } : unchanged(s);
    case 'detach-failed': {
      const d = s.tracked.get(e.alias);
      // Already answered by an event.
      if (!d?.waiting) return unchanged(s);
      return failed(s, e.alias, d, e.reason);
    }
    case 'call-gave-up': {
      const d = s.tracked.get(e.alias);
      if (!d?.waiting) return unchanged(s);
      // The removal stays requested: from now on a restart must show it.
      const rest: UnplugRequested = { ...d, waiting: false, marked: true };
      return {
        state: { ...s, tracked: withDevice(s.tracked, e.alias, rest) },
        effects: [
          ...(d.marked ? [] : [{ type: 'persist' } as const]),
          { type: 'publish' },
          { type: 'settle', alias: e.alias, answer: { kind: 'pending', why: e.why } },
        ],
      };
    }
    case 'device-removed': {
      const d = s.tracked.get(e.alias);
      return d ? removedByEvent(s, e.alias, d) : { state: s, effects: [{ type: 'reread' }] };
    }
    case 'removal-failed': {
      const d = s.tracked.get(e.alias);
      if (!d) return unchanged(s);
      return failed(s, e.alias, d, 'guest-rejected');
    }
    case 'observed':
      return observe(s, e.present);
    case 'adopted': {
      const tracked = new Map(s.tracked);
      for (const m of e.marks) {
        if (tracked.has(m.alias)) continue;
        tracked.set(m.alias, {
          phase: 'unplug-requested',
          since: m.since,
          by: 'adopted',
          waiting: false,
          marked: true,
        });
      }
      return observe({ ...s, tracked }, e.present, e.recorded);
    }
    case 'booted': {
      // The new run's metadata starts without marks.
      const t = endRun(s, e.present);
      return { state: t.state, effects: [{ type: 'persist' }, ...t.effects] };
    }
    case 'vm-stopped':
      return endRun(s, []);
  }
}
