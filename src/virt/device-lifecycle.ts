// The lifecycle of a VM's memory devices as a pure state machine
// (docs/design.md, "Device lifecycle"). Every source of news about a device
// (the unplug or resize call, libvirt's device events, the VM stopping, the
// call's timers, a re-read of the live XML after an event, a reconnect or a
// restart) is an event; `next` returns the new state and the effects to carry
// out, as data. A removal is decided by libvirt's device-removed event for a
// requested device (libvirt sends it once the device left the live
// definition), or by a re-read of the live XML that no longer lists it. A
// resize is decided by re-reads of the live XML. The VM's worker (vm-worker.ts) is the only caller, so the
// state has one owner and every outcome is decided in one place.

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

/** What a resize that stops short does to `requested` (resize-memory.ts). */
export type OnResizeFailure = 'settle' | 'keep';

/**
 * Who moved a virtio-mem device: a call of ours, a mark found in metadata
 * after a restart, or nobody we know of (an operator's virsh, or a resize
 * whose call was lost with an unmarked daemon): then it is only shown.
 */
export type ResizeOrigin = 'call' | 'adopted' | 'observed';

/** A virtio-mem device whose `current` is on its way to `requested`. */
export interface Resizing {
  readonly phase: 'resizing';
  /** ISO time of the request (kept in metadata); null for an observed resize. */
  readonly since: string | null;
  readonly by: ResizeOrigin;
  /** A call awaits this device's outcome. */
  readonly waiting: boolean;
  /** MiB asked of the guest. */
  readonly requested: number;
  /** ISO time the resize gives up; absent when it has none (kept after a failure, or observed). */
  readonly deadline?: string;
  readonly onFailure: OnResizeFailure;
  /** Its deadline passed or it stopped moving: the next re-read of the live XML decides. */
  readonly ending?: 'timeout' | 'stalled';
  /** It stopped short and `requested` is being set to where it stopped (onFailure 'settle'). */
  readonly settling?: Settling;
  /**
   * Kept in metadata (a mark). Not at first: a resize that ends within a
   * second costs no write; it is marked once still pending (`mark-due`).
   */
  readonly marked: boolean;
}

export interface Settling {
  readonly why: 'timeout' | 'stalled';
  /** MiB the resize had asked for, and its deadline: its mark keeps them, so a restart settles again. */
  readonly asked: number;
  readonly deadline?: string;
  /**
   * libvirt took the settle (its update returned): the next re-read tells the
   * end whatever `requested` it shows, since someone may have asked again.
   */
  readonly landed?: true;
}

/** A device that is not simply `plugged` (see docs/design.md for how to add a phase). */
export type TrackedDevice = UnplugRequested | Resizing;

/** A virtio-mem device's sizes in the live XML (MiB). */
export interface Sizes {
  readonly requested: number;
  readonly current: number;
}

export interface DeviceSet {
  /** DIMM aliases in the live XML, as last read. A present alias not in `tracked` is plugged. */
  readonly present: readonly string[];
  readonly tracked: ReadonlyMap<string, TrackedDevice>;
  /** The virtio-mem devices of the live XML, as last read. */
  readonly sizes: ReadonlyMap<string, Sizes>;
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

/** What a waiting resize call is told. */
export type ResizeAnswer =
  | { readonly kind: 'resized' }
  /** It stopped short at `current` (MiB, as last read): the call applies its onFailure. */
  | {
      readonly kind: 'stopped';
      readonly why: 'timeout' | 'stalled';
      readonly current: number;
      /** requested after it: current when settled, else the request (kept, or the settle refused). */
      readonly requestedNow: number;
      /**
       * libvirt could not be re-read after the wait ended: `current` and
       * `requestedNow` are as last read, and a settle asked for is not known
       * to have landed. A later re-read reports the end (resize-notify, late).
       */
      readonly unconfirmed?: true;
    }
  | { readonly kind: 'failed'; readonly reason: 'device-not-found' | 'libvirt-error' | 'vm-gone' };

/** How a resize nobody waits for any more ended (always late: its call is gone). */
export type ResizeOutcome =
  | { readonly kind: 'resized'; readonly requested: number; readonly current: number }
  | {
      readonly kind: 'stopped';
      readonly reason: 'timeout' | 'stalled';
      readonly requested: number;
      readonly current: number;
      /** requested after the outcome: current when settled, else what was asked. */
      readonly requestedNow: number;
    };

/** A resize mark as kept in metadata. */
export interface ResizeMark {
  readonly alias: string;
  readonly since: string;
  readonly requested: number;
  readonly deadline?: string;
  readonly onFailure: OnResizeFailure;
}

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
  /** The request is still pending a while after it was made (or its detach returned): mark it now. */
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
  /** The resize call, before it asks libvirt for the new `requested`. */
  | {
      readonly type: 'resize-requested';
      readonly alias: string;
      readonly since: string;
      readonly requested: number;
      readonly deadline: string;
      readonly onFailure: OnResizeFailure;
    }
  /** libvirt accepted the new `requested`: a re-read shows where the device is (it may be there already). */
  | { readonly type: 'resize-sent'; readonly alias: string }
  /** libvirt refused the new `requested` (or the VM went): nothing changed. */
  | { readonly type: 'resize-failed'; readonly alias: string; readonly reason: 'libvirt-error' | 'vm-gone' }
  /** A virtio-mem device's sizes in a re-read of the live XML (one per device, after each re-read). */
  | {
      readonly type: 'size-changed';
      readonly alias: string;
      readonly requested: number;
      readonly current: number;
    }
  /** libvirt refused to settle `requested` to where a stopped resize got (set-requested). */
  | { readonly type: 'settle-failed'; readonly alias: string }
  /**
   * libvirt took the settle's `requested` (set-requested returned), told
   * after every re-read begun before it was applied: a re-read decides.
   */
  | { readonly type: 'settle-landed'; readonly alias: string }
  /**
   * A re-read of the live XML failed and none is queued behind it (the
   * worker retries it): a resize call whose wait ended (ending, or settling)
   * is answered with the sizes last read. Unplugs need no re-read.
   */
  | { readonly type: 'resize-reread-failed' }
  /** The resize's deadline passed, or it has not moved for the stall period (the worker's timers). */
  | { readonly type: 'resize-gave-up'; readonly alias: string; readonly why: 'timeout' | 'stalled' }
  /** A re-read of the live XML: after an event, a reconnect's resync, or any reload. */
  | { readonly type: 'observed'; readonly present: readonly string[] }
  /** Restart recovery: a boot we did not see, with the marks its metadata holds. */
  | {
      readonly type: 'adopted';
      readonly present: readonly string[];
      readonly marks: readonly { readonly alias: string; readonly since: string }[];
      /** The devices metadata listed as present when last written: the ones gone were removed while we were away. */
      readonly recorded?: readonly string[];
      /** The virtio-mem devices of the live XML. */
      readonly virtio?: readonly ({ readonly alias: string } & Sizes)[];
      /** Resizes metadata holds (requested while the daemon ran before). */
      readonly resizeMarks?: readonly ResizeMark[];
    }
  /** The VM started a new boot. */
  | {
      readonly type: 'booted';
      readonly present: readonly string[];
      readonly virtio?: readonly ({ readonly alias: string } & Sizes)[];
    }
  /** The VM stopped (or is gone). */
  | { readonly type: 'vm-stopped' };

export type Effect =
  /** Write the VM's metadata (its marks are `marksOf(state)` and `resizeMarksOf(state)`). */
  | { readonly type: 'persist' }
  /**
   * Rebuild the VM's stats, notifying if they changed; `defer`: a state that
   * is often brief (a detach sent), announced only if it lasts.
   */
  | { readonly type: 'publish'; readonly defer?: true }
  /** Answer the call waiting on this device. */
  | { readonly type: 'settle'; readonly alias: string; readonly answer: Answer }
  /** Tell clients how a removal ended. */
  | { readonly type: 'notify'; readonly alias: string; readonly outcome: Terminal }
  /** A device left: lower guaranteed memory to the new size (or to what the call asked). */
  | { readonly type: 'clamp-guaranteed'; readonly requested?: number }
  /** Re-read the live XML; its result comes back as `size-changed` and `observed` (a failed read is retried by the worker). */
  | { readonly type: 'reread' }
  /** libvirt removed this DIMM from the live definition: take it out of the cached domain too (first). */
  | { readonly type: 'drop'; readonly alias: string }
  /** Answer the resize call waiting on this device. */
  | { readonly type: 'resize-answer'; readonly alias: string; readonly answer: ResizeAnswer }
  /** Tell clients how a resize nobody waited for ended (late). */
  | { readonly type: 'resize-notify'; readonly alias: string; readonly outcome: ResizeOutcome }
  /** A virtio-mem device moved (a memory_device_size_changed notification; restarts its stall timer). */
  | {
      readonly type: 'progress';
      readonly alias: string;
      readonly requested: number;
      readonly current: number;
    }
  /** Ask libvirt for this `requested` (settling a resize that stopped short); a refusal comes back as settle-failed. */
  | { readonly type: 'set-requested'; readonly alias: string; readonly requested: number };

export interface Transition {
  readonly state: DeviceSet;
  readonly effects: readonly Effect[];
}

export const EMPTY: DeviceSet = { present: [], tracked: new Map(), sizes: new Map() };

export function deviceSet(
  present: readonly string[],
  sizes: ReadonlyMap<string, Sizes> = new Map(),
): DeviceSet {
  return { present: [...present], tracked: new Map(), sizes: new Map(sizes) };
}

/** The unplug marks to keep in metadata: every requested removal that is marked. */
export function marksOf(s: DeviceSet): { alias: string; since: string }[] {
  const out: { alias: string; since: string }[] = [];
  for (const [alias, d] of s.tracked)
    if (d.phase === 'unplug-requested' && d.marked) out.push({ alias, since: d.since });
  return out;
}

/** The resize marks to keep in metadata: every resize of ours that is marked. */
export function resizeMarksOf(s: DeviceSet): ResizeMark[] {
  const out: ResizeMark[] = [];
  for (const [alias, d] of s.tracked) {
    if (d.phase !== 'resizing' || !d.marked || d.since === null) continue;
    // While settling, the mark stays what it was: a restart finds the deadline past and settles again.
    const deadline = d.settling ? d.settling.deadline : d.deadline;
    out.push({
      alias,
      since: d.since,
      requested: d.settling?.asked ?? d.requested,
      ...(deadline !== undefined ? { deadline } : {}),
      onFailure: d.onFailure,
    });
  }
  return out;
}

export function phaseOf(s: DeviceSet, alias: string): 'plugged' | 'unplugging' | 'resizing' {
  const d = s.tracked.get(alias);
  return !d ? 'plugged' : d.phase === 'resizing' ? 'resizing' : 'unplugging';
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

function unplugOf(s: DeviceSet, alias: string): UnplugRequested | undefined {
  const d = s.tracked.get(alias);
  return d?.phase === 'unplug-requested' ? d : undefined;
}

function resizeOf(s: DeviceSet, alias: string): Resizing | undefined {
  const d = s.tracked.get(alias);
  return d?.phase === 'resizing' ? d : undefined;
}

// ---------------------------------------------------------------- unplug

/** The device is plugged again: bookkeeping, the call's answer, the clients' notification. */
function failed(s: DeviceSet, alias: string, d: UnplugRequested, reason: FailReason): Transition {
  // An unmarked request left nothing in metadata to take back.
  const effects: Effect[] = d.marked ? [{ type: 'persist' }, { type: 'publish' }] : [{ type: 'publish' }];
  if (d.waiting) effects.push({ type: 'settle', alias, answer: { kind: 'failed', reason } });
  effects.push({ type: 'notify', alias, outcome: { kind: 'failed', reason } });
  return { state: { ...s, tracked: without(s.tracked, alias) }, effects };
}

/** A fresh view of the live XML: a requested DIMM missing from it is removed. */
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
    // virtio-mem devices are not in `present`; their sizes decide (size-changed).
    if (d.phase === 'resizing') {
      tracked.set(alias, d);
      continue;
    }
    if (here.has(alias)) {
      tracked.set(alias, d);
      continue;
    }
    effects.push(clampFor(d));
    answers.push(...removalAnswers(alias, d));
  }
  if (answers.length) effects.push({ type: 'persist' });
  effects.push({ type: 'publish' }, ...answers);
  return { state: { ...s, present: [...present], tracked }, effects };
}

/** A requested device is gone: guaranteed memory follows what its call asked, or the new size. */
function clampFor(d: UnplugRequested): Effect {
  return d.waiting && d.guaranteed !== undefined
    ? { type: 'clamp-guaranteed', requested: d.guaranteed }
    : { type: 'clamp-guaranteed' };
}

function removalAnswers(alias: string, d: UnplugRequested): Effect[] {
  const notify: Effect = { type: 'notify', alias, outcome: { kind: 'removed', late: !d.waiting } };
  return d.waiting ? [{ type: 'settle', alias, answer: { kind: 'removed', late: false } }, notify] : [notify];
}

/** libvirt said a requested device left the live definition: removed, with no re-read. */
function removedByEvent(s: DeviceSet, alias: string, d: UnplugRequested): Transition {
  return {
    state: { ...s, present: s.present.filter((a) => a !== alias), tracked: without(s.tracked, alias) },
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
function endRun(s: DeviceSet, present: readonly string[], sizes: ReadonlyMap<string, Sizes>): Transition {
  const effects: Effect[] = [{ type: 'publish' }];
  for (const [alias, d] of s.tracked) {
    if (!d.waiting) continue;
    if (d.phase === 'resizing') {
      effects.push({ type: 'resize-answer', alias, answer: { kind: 'failed', reason: 'vm-gone' } });
      continue;
    }
    const outcome = { kind: 'failed', reason: 'vm-gone' } as const;
    effects.push({ type: 'settle', alias, answer: outcome }, { type: 'notify', alias, outcome });
  }
  return { state: { present: [...present], tracked: new Map(), sizes }, effects };
}

type Handler<T extends DeviceEvent['type']> = (
  s: DeviceSet,
  e: Extract<DeviceEvent, { type: T }>,
) => Transition;

const onUnplugRequested: Handler<'unplug-requested'> = (s, e) => {
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
};

const onMarkDue: Handler<'mark-due'> = (s, e) => {
  const d = s.tracked.get(e.alias);
  if (!d || d.marked) return unchanged(s);
  // An observed resize (only resizes can have no since) is not ours to mark.
  if (d.since === null) return unchanged(s);
  return {
    state: { ...s, tracked: withDevice(s.tracked, e.alias, { ...d, marked: true }) },
    effects: [{ type: 'persist' }],
  };
};

const onMarkFailed: Handler<'mark-failed'> = (s, e) => {
  const d = unplugOf(s, e.alias);
  if (!d?.waiting) return unchanged(s);
  return {
    state: { ...s, tracked: without(s.tracked, e.alias) },
    effects: [
      { type: 'publish' },
      { type: 'settle', alias: e.alias, answer: { kind: 'failed', reason: e.reason } },
    ],
  };
};

const onDetachRequested: Handler<'detach-requested'> = (s, e) =>
  unplugOf(s, e.alias)?.waiting ? { state: s, effects: [{ type: 'publish', defer: true }] } : unchanged(s);

const onDetachFailed: Handler<'detach-failed'> = (s, e) => {
  const d = unplugOf(s, e.alias);
  // Already answered by an event.
  if (!d?.waiting) return unchanged(s);
  return failed(s, e.alias, d, e.reason);
};

const onCallGaveUp: Handler<'call-gave-up'> = (s, e) => {
  const d = unplugOf(s, e.alias);
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
};

const onDeviceRemoved: Handler<'device-removed'> = (s, e) => {
  const d = unplugOf(s, e.alias);
  return d ? removedByEvent(s, e.alias, d) : { state: s, effects: [{ type: 'reread' }] };
};

const onRemovalFailed: Handler<'removal-failed'> = (s, e) => {
  const d = unplugOf(s, e.alias);
  if (!d) return unchanged(s);
  return failed(s, e.alias, d, 'guest-rejected');
};

const onObserved: Handler<'observed'> = (s, e) => observe(s, e.present);

const onAdopted: Handler<'adopted'> = (s, e) => {
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
  const sizes = e.virtio ? sizeMap(e.virtio) : s.sizes;
  let dropped = false;
  for (const m of e.resizeMarks ?? []) {
    if (tracked.has(m.alias)) continue;
    // A device the live XML no longer has: nothing to follow; its mark goes.
    if (!sizes.has(m.alias)) {
      dropped = true;
      continue;
    }
    tracked.set(m.alias, {
      phase: 'resizing',
      since: m.since,
      by: 'adopted',
      waiting: false,
      requested: m.requested,
      ...(m.deadline !== undefined ? { deadline: m.deadline } : {}),
      onFailure: m.onFailure,
      marked: true,
    });
  }
  let t = observe({ ...s, tracked, sizes }, e.present, e.recorded);
  // Each virtio-mem device as a first sight: an adopted resize already there ends (late).
  // (The sizes are the state's already, so none shows a move.)
  for (const [alias, z] of sizes) t = chain(t, sized(t.state, alias, z));
  if (dropped && !t.effects.some((x) => x.type === 'persist'))
    t = { ...t, effects: [{ type: 'persist' }, ...t.effects] };
  return t;
};

const onBooted: Handler<'booted'> = (s, e) => {
  // The new run's metadata starts without marks.
  let t = endRun(s, e.present, e.virtio ? sizeMap(e.virtio) : new Map());
  // A device already moving at boot (its requested was set in the definition) is only shown.
  for (const [alias, z] of t.state.sizes) t = chain(t, sized(t.state, alias, z));
  return { state: t.state, effects: [{ type: 'persist' }, ...t.effects] };
};

const onVmStopped: Handler<'vm-stopped'> = (s) => endRun(s, [], new Map());

// ---------------------------------------------------------------- resize

function sizeMap(list: readonly ({ readonly alias: string } & Sizes)[]): Map<string, Sizes> {
  return new Map(list.map((v) => [v.alias, { requested: v.requested, current: v.current }]));
}

function chain(a: Transition, b: Transition): Transition {
  return { state: b.state, effects: [...a.effects, ...b.effects] };
}

/** A resize that is not ours: shown resizing while its sizes differ, never marked nor told. */
function observedResize(z: Sizes): Resizing {
  return {
    phase: 'resizing',
    since: null,
    by: 'observed',
    waiting: false,
    requested: z.requested,
    onFailure: 'keep',
    marked: false,
  };
}

/** Our tracking of a virtio-mem device ends; its sizes alone decide whether it still shows resizing. */
function untracked(s: DeviceSet, alias: string): DeviceSet {
  const tracked = without(s.tracked, alias);
  const z = s.sizes.get(alias);
  if (z && z.current !== z.requested) tracked.set(alias, observedResize(z));
  return { ...s, tracked };
}

/** The device reached its requested size: the call's answer, or a late notification of ours. */
function reached(s: DeviceSet, alias: string, d: Resizing, z: Sizes): Transition {
  const effects: Effect[] = d.marked ? [{ type: 'persist' }, { type: 'publish' }] : [{ type: 'publish' }];
  if (d.waiting) effects.push({ type: 'resize-answer', alias, answer: { kind: 'resized' } });
  else if (d.by !== 'observed') {
    effects.push({
      type: 'resize-notify',
      alias,
      outcome: { kind: 'resized', requested: z.requested, current: z.current },
    });
  }
  return { state: untracked(s, alias), effects };
}

/** How a resize that stopped short is reported: the waiting call's answer, or a late notification of ours. */
function tell(
  d: Resizing,
  alias: string,
  why: 'timeout' | 'stalled',
  current: number,
  requestedNow: number,
): Effect[] {
  if (d.waiting) {
    return [{ type: 'resize-answer', alias, answer: { kind: 'stopped', why, current, requestedNow } }];
  }
  // Never an observed resize: it has no deadline, so it never ends short.
  const requested = d.settling?.asked ?? d.requested;
  return [
    {
      type: 'resize-notify',
      alias,
      outcome: { kind: 'stopped', reason: why, requested, current, requestedNow },
    },
  ];
}

/**
 * The resize ended short at `current`. `keep`: it is told now and stays
 * resizing, with no deadline (a restart still shows it). `settle`:
 * `requested` is set to `current` first (set-requested), and the outcome is
 * told once a re-read shows libvirt took it (or the settle failed).
 */
function stopped(s: DeviceSet, alias: string, d: Resizing, why: 'timeout' | 'stalled', z: Sizes): Transition {
  const { deadline: _d, ending: _e, ...rest } = d;
  const { current } = z;
  if (d.onFailure === 'keep') {
    const kept: Resizing = { ...rest, waiting: false, marked: true };
    return {
      state: { ...s, tracked: withDevice(s.tracked, alias, kept) },
      effects: [{ type: 'persist' }, { type: 'publish' }, ...tell(d, alias, why, current, z.requested)],
    };
  }
  const settling = {
    ...rest,
    requested: current,
    // Ending implies a deadline (resize-gave-up needs one): the mark keeps it, so a restart settles again.
    settling: { why, asked: d.requested, deadline: d.deadline },
  };
  // libvirt's requested is there already (someone asked for where the guest
  // is): the read shows what a settle would make, so it is told now.
  if (z.requested === current) return settled(s, alias, settling, z);
  return {
    state: { ...s, tracked: withDevice(s.tracked, alias, settling) },
    effects: [{ type: 'set-requested', alias, requested: current }],
  };
}

/** The settle ended (libvirt took the new requested, or refused it): tell, and let the sizes decide the phase. */
function settled(s: DeviceSet, alias: string, d: Resizing & { settling: Settling }, z: Sizes): Transition {
  // Still apart (the guest had moved on, or the settle was refused): shown as a resize not ours.
  return {
    state: untracked(s, alias),
    effects: [
      ...(d.marked ? [{ type: 'persist' } as const] : []),
      { type: 'publish' },
      ...tell(d, alias, d.settling.why, z.current, z.requested),
    ],
  };
}

/**
 * A device's sizes as read: remember them, report a move, start showing a
 * resize nobody asked us for, finish one that got there or whose wait ended.
 */
function sized(s0: DeviceSet, alias: string, z: Sizes): Transition {
  const prev = s0.sizes.get(alias);
  const moved = prev !== undefined && (prev.requested !== z.requested || prev.current !== z.current);
  const s: DeviceSet =
    prev?.requested === z.requested && prev.current === z.current
      ? s0
      : { ...s0, sizes: new Map(s0.sizes).set(alias, { requested: z.requested, current: z.current }) };
  const progress: Effect[] = moved
    ? [{ type: 'progress', alias, requested: z.requested, current: z.current }]
    : [];
  const d = resizeOf(s, alias);
  if (!d) {
    if (z.current === z.requested)
      return { state: s, effects: moved ? [{ type: 'publish' }, ...progress] : [] };
    return {
      state: { ...s, tracked: withDevice(s.tracked, alias, observedResize(z)) },
      effects: [{ type: 'publish' }, ...progress],
    };
  }
  // libvirt took the settle: the stopped resize is told. (Once it landed,
  // another requested means someone asked again since: waiting for ours
  // would never end.)
  if (d.settling) {
    const ds = { ...d, settling: d.settling };
    return z.requested === d.requested || d.settling.landed
      ? chain({ state: s, effects: progress }, settled(s, alias, ds, z))
      : { state: s, effects: progress };
  }
  // Asked for another size behind our back: follow it, unless a call waits for its own.
  const cur: Resizing = !d.waiting && z.requested !== d.requested ? { ...d, requested: z.requested } : d;
  const s1 = cur === d ? s : { ...s, tracked: withDevice(s.tracked, alias, cur) };
  // (Unless a call waits, cur.requested is z.requested now: reaching it is current == requested.)
  if (z.current === cur.requested) {
    // A late end is told by its own notification (late: true), not as a plain move.
    const late = !cur.waiting && cur.by !== 'observed';
    return chain({ state: s1, effects: late ? [] : progress }, reached(s1, alias, cur, z));
  }
  if (cur.ending) return chain({ state: s1, effects: progress }, stopped(s1, alias, cur, cur.ending, z));
  const mark: Effect[] = cur !== d && cur.marked ? [{ type: 'persist' }] : [];
  return { state: s1, effects: moved || cur !== d ? [...mark, { type: 'publish' }, ...progress] : [] };
}

const onResizeRequested: Handler<'resize-requested'> = (s, e) => {
  const z = s.sizes.get(e.alias);
  if (!z) {
    return {
      state: s,
      effects: [
        { type: 'resize-answer', alias: e.alias, answer: { kind: 'failed', reason: 'device-not-found' } },
      ],
    };
  }
  const before = resizeOf(s, e.alias);
  // A second call cannot wait on one device (the VM's operations are serial; the worker refuses it).
  if (before?.waiting) return unchanged(s);
  const d: Resizing = {
    phase: 'resizing',
    since: e.since,
    by: 'call',
    waiting: true,
    requested: e.requested,
    deadline: e.deadline,
    onFailure: e.onFailure,
    // Takes over an earlier resize's mark (it is rewritten with this request).
    marked: before?.marked ?? false,
  };
  return {
    state: { ...s, tracked: withDevice(s.tracked, e.alias, d) },
    effects: d.marked ? [{ type: 'persist' }, { type: 'publish' }] : [{ type: 'publish' }],
  };
};

const onResizeSent: Handler<'resize-sent'> = (s, e) =>
  resizeOf(s, e.alias)?.waiting ? { state: s, effects: [{ type: 'reread' }] } : unchanged(s);

const onResizeFailed: Handler<'resize-failed'> = (s, e) => {
  const d = resizeOf(s, e.alias);
  if (!d?.waiting) return unchanged(s);
  return {
    state: untracked(s, e.alias),
    effects: [
      ...(d.marked ? [{ type: 'persist' } as const] : []),
      { type: 'publish' },
      { type: 'resize-answer', alias: e.alias, answer: { kind: 'failed', reason: e.reason } },
    ],
  };
};

const onSizeChanged: Handler<'size-changed'> = (s, e) =>
  sized(s, e.alias, { requested: e.requested, current: e.current });

const onResizeGaveUp: Handler<'resize-gave-up'> = (s, e) => {
  const d = resizeOf(s, e.alias);
  if (!d || d.ending || d.deadline === undefined) return unchanged(s);
  // The live XML decides (the last move may not have reached us yet).
  return {
    state: { ...s, tracked: withDevice(s.tracked, e.alias, { ...d, ending: e.why }) },
    effects: [{ type: 'reread' }],
  };
};

const onSettleFailed: Handler<'settle-failed'> = (s, e) => {
  const d = resizeOf(s, e.alias);
  const z = s.sizes.get(e.alias);
  if (!d?.settling || !z) return unchanged(s);
  return settled(s, e.alias, { ...d, settling: d.settling }, z);
};

const onSettleLanded: Handler<'settle-landed'> = (s, e) => {
  const d = resizeOf(s, e.alias);
  if (!d?.settling) return unchanged(s);
  const landed: Resizing = { ...d, settling: { ...d.settling, landed: true } };
  return { state: { ...s, tracked: withDevice(s.tracked, e.alias, landed) }, effects: [{ type: 'reread' }] };
};

const onResizeRereadFailed: Handler<'resize-reread-failed'> = (s) => {
  const tracked = new Map(s.tracked);
  const answers: Effect[] = [];
  let persist = false;
  for (const [alias, z] of s.sizes) {
    const d = resizeOf(s, alias);
    const why = d?.settling?.why ?? d?.ending;
    if (!d?.waiting || why === undefined) continue;
    // It stays ending or settling: the next re-read that succeeds tells its end (late).
    tracked.set(alias, { ...d, waiting: false, marked: true });
    persist ||= !d.marked;
    answers.push({
      type: 'resize-answer',
      alias,
      answer: { kind: 'stopped', why, current: z.current, requestedNow: z.requested, unconfirmed: true },
    });
  }
  if (!answers.length) return unchanged(s);
  return { state: { ...s, tracked }, effects: persist ? [{ type: 'persist' }, ...answers] : answers };
};

const handlers: { readonly [T in DeviceEvent['type']]: Handler<T> } = {
  'unplug-requested': onUnplugRequested,
  'mark-due': onMarkDue,
  'mark-failed': onMarkFailed,
  'detach-requested': onDetachRequested,
  'detach-failed': onDetachFailed,
  'call-gave-up': onCallGaveUp,
  'device-removed': onDeviceRemoved,
  'removal-failed': onRemovalFailed,
  'resize-requested': onResizeRequested,
  'resize-sent': onResizeSent,
  'resize-failed': onResizeFailed,
  'size-changed': onSizeChanged,
  'resize-gave-up': onResizeGaveUp,
  'settle-failed': onSettleFailed,
  'settle-landed': onSettleLanded,
  'resize-reread-failed': onResizeRereadFailed,
  observed: onObserved,
  adopted: onAdopted,
  booted: onBooted,
  'vm-stopped': onVmStopped,
};

export function next(s: DeviceSet, e: DeviceEvent): Transition {
  return (handlers[e.type] as Handler<DeviceEvent['type']>)(s, e as never);
}
