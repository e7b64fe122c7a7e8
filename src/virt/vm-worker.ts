// One worker per VM, like kubelet's pod workers, and the only writer of the
// VM's record (docs/design.md, "Device lifecycle"). It
// - applies device events to the lifecycle machine and carries out the
//   effects, synchronously, so events of one VM apply one at a time and never
//   wait for an operation;
// - reloads the VM from libvirt, one read at a time and applied in order;
//   a failed read is retried with backoff;
// - runs the VM's memory operations one after the other. An operation reads
//   the record, submits events and awaits their answers outside the worker,
//   so an unplug waiting for the guest never holds up the VM's events.

import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { DomainAffect, type DomainRef, type LibvirtApi, MetadataType } from '../libvirt/types.js';
import {
  type Answer,
  type DeviceEvent,
  type Effect,
  EMPTY,
  next,
  type OnResizeFailure,
  type ResizeAnswer,
  type ResizeOutcome,
} from './device-lifecycle.js';
import { isUserAlias } from './dimm-xml.js';
import { withoutDimm } from './domain-xml.js';
import { VirtError } from './errors.js';
import type { GuestDimmView, ProbedDimm } from './guest-memory.js';
import type { GuestProbeLoop, GuestProber, GuestViews } from './guest-probe.js';
import { isNoDomain, libvirtDetails } from './libvirt-errors.js';
import { buildMetadata, emptyMetadata, METADATA_PREFIX, METADATA_URI } from './metadata.js';
import type { OpLog } from './op-context.js';
import type { SizeChangeNotifier } from './size-change-notifier.js';
import { isActive, statusOf } from './status.js';
import type { VmManagerEvents, VmStats } from './types.js';
import { isLiveVirtioMem, resizeXml } from './virtio-mem.js';
import { mergeHow, type ReloadHow, readDomain, type Snapshot } from './vm-read.js';
import { metadataOf, presentAliases, type RunFacts, type VmRecord } from './vm-record.js';
import { buildStats, statsChanged } from './vm-stats.js';

/** A waiting call's answer, with the VM's sizes when it was given. */
export interface Settled {
  answer: Answer;
  memSize: number;
  memGuaranteedSize: number;
}

export interface UnplugRequest {
  /** Settles exactly once, with what the lifecycle machine decided. */
  answer: Promise<Settled>;
  /** The metadata write recording the request (the detach must wait for it); settled at once when none is needed. */
  marked: Promise<void>;
  /** No mark was needed before the detach (metadata lists the DIMM as present). */
  recorded: boolean;
}

/** A waiting resize call's answer, with the VM's memory when it was given. */
export interface ResizeSettled {
  answer: ResizeAnswer;
  memSize: number;
}

export interface ResizeRequest {
  /** MiB */
  requested: number;
  timeoutMs: number;
  stallMs: number;
  onFailure: OnResizeFailure;
}

export interface WorkerDeps {
  client: LibvirtApi;
  log: Logger;
  events: EventEmitter<VmManagerEvents>;
  /** The registry forgets this worker (its VM is gone). */
  detach(uuid: string): void;
  /** Reloads through the VM's current worker (after this one was detached). */
  reloadCurrent(ref: DomainRef, how: ReloadHow): Promise<VmRecord | undefined>;
  /** Asks the guest agent about the VM's DIMMs (none: every DIMM stays unknown). */
  guest?: GuestProber;
  /** virtio-mem size moves, coalesced into memory_device_size_changed (none: not notified). */
  sizeChanges?: SizeChangeNotifier;
  /** The stall period of a resize adopted after a restart (memory.resize_stall_timeout; default 20 s). */
  resizeStallMs?: number;
}

/** The timers of a resize with a deadline: the deadline, and no move for the stall period. */
interface ResizeWatch {
  deadline: NodeJS.Timeout;
  stall: NodeJS.Timeout;
  stallMs: number;
}

const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 30_000;

/**
 * How long a change published with `defer` (a detach sent: the DIMM shows
 * unplugging) waits before clients hear of it. The guests here release in
 * 30-45 ms, and then the removal's own VM_status, sent at once, says it all;
 * a removal still pending after this is announced as unplugging.
 */
export const ANNOUNCE_AFTER_MS = 100;

export class VmWorker {
  private vm: VmRecord | undefined;
  private detached = false;
  private reads: Promise<unknown> = Promise.resolve();
  private ops: Promise<unknown> = Promise.resolve();
  private opsPending = 0;
  private readonly waiters = new Map<string, (s: Settled) => void>();
  private readonly resizeWaiters = new Map<string, (s: ResizeSettled) => void>();
  /** Stall periods asked by waiting calls, by alias (others use the configured one). */
  private readonly stallOf = new Map<string, number>();
  private readonly watches = new Map<string, ResizeWatch>();
  private applying = false;
  private readonly queued: DeviceEvent[] = [];
  /** Reads of the live XML started so far (their sequence numbers). */
  private readsStarted = 0;
  /** Reloads asked for and not started yet (a failed read behind which none waits ends resizes' waits). */
  private readsQueued = 0;
  /** DIMMs libvirt removed (device-removed), with `readsStarted` at that time: reads numbered up to it predate the removal. */
  private readonly dropped = new Map<string, number>();
  private stopped = false;
  private retry: { timer: NodeJS.Timeout | undefined; delayMs: number; how: ReloadHow } | undefined;
  private readonly guestLoop: GuestProbeLoop | undefined;
  /** A deferred change not announced yet: what clients last heard, and the timer that announces it. */
  private held: { heard: VmStats | undefined; timer: NodeJS.Timeout } | undefined;

  constructor(
    readonly uuid: string,
    private ref: DomainRef,
    private readonly deps: WorkerDeps,
  ) {
    this.guestLoop = deps.guest?.loop({
      subject: () => {
        const vm = this.vm;
        if (!vm?.active || vm.status !== 'Up') return undefined;
        return { ref: vm.ref, dimms: probedDimms(vm), run: vm.ref.id };
      },
      apply: (dimms, views) => this.applyGuest(dimms, views),
    });
  }

  /** The VM's record, to read; undefined when the VM is gone. */
  get record(): Readonly<VmRecord> | undefined {
    return this.vm;
  }

  require(): Readonly<VmRecord> {
    if (!this.vm)
      throw new VirtError('no-such-vm', 'no-such-vm', `no VM with id ${this.uuid}`, { vmId: this.uuid });
    return this.vm;
  }

  // ---- operations ----

  /** Runs `op` after every operation queued before it on this VM. */
  operate<T>(op: () => Promise<T>): Promise<T> {
    this.opsPending++;
    const result = this.ops.then(op);
    this.ops = result.then(
      () => this.opsPending--,
      () => this.opsPending--,
    );
    return result;
  }

  /** Resolves when the operations queued so far have settled. */
  async opsIdle(): Promise<void> {
    while (this.opsPending > 0) await this.ops;
  }

  get busy(): boolean {
    return this.opsPending > 0;
  }

  /** A call's request to unplug `alias`: the mark, then the answer the machine gives. */
  requestUnplug(alias: string, guaranteed: number | undefined): UnplugRequest {
    if (this.waiters.has(alias)) throw new Error(`already waiting for ${alias} on ${this.uuid}`);
    const answer = new Promise<Settled>((resolve) => this.waiters.set(alias, resolve));
    const since = new Date().toISOString();
    // Metadata lists the DIMM as present: if we die now, a restart finds its
    // removal by difference, so the detach need not wait for a mark.
    const recorded = this.vm?.recordedPresent?.has(alias) === true;
    const marked = this.submit({
      type: 'unplug-requested',
      alias,
      since,
      mark: !recorded,
      ...(guaranteed !== undefined ? { guaranteed } : {}),
    });
    return { answer, marked: marked ?? Promise.resolve(), recorded };
  }

  /**
   * A call's request to resize a virtio-mem device to `requested` MiB: the
   * machine tracks it, the worker's timers give it up at the deadline or
   * when it stops moving, and the answer says how it ended.
   */
  requestResize(alias: string, r: ResizeRequest): Promise<ResizeSettled> {
    this.require();
    if (this.resizeWaiters.has(alias)) throw new Error(`already waiting for ${alias} on ${this.uuid}`);
    const answer = new Promise<ResizeSettled>((resolve) => this.resizeWaiters.set(alias, resolve));
    const now = Date.now();
    this.stallOf.set(alias, r.stallMs);
    this.submit({
      type: 'resize-requested',
      alias,
      since: new Date(now).toISOString(),
      requested: r.requested,
      deadline: new Date(now + r.timeoutMs).toISOString(),
      onFailure: r.onFailure,
    });
    return answer;
  }

  /** Sets live guaranteed memory; resolves when it is written. */
  setGuaranteed(miB: number): Promise<void> {
    const vm = this.require() as VmRecord;
    vm.meta.guaranteedMiB = miB;
    this.publish();
    return this.persist();
  }

  // ---- what the guest says of its DIMMs (guest-probe.ts) ----

  /**
   * Asks the guest now about these DIMMs (a pre-flight, which must not trust
   * a cached answer); the answer is kept in the record as well. Never rejects:
   * no agent or no answer within the deadline is 'unknown'. An agent silent
   * at its last probe is not waited for (no views; `op` is told).
   */
  async probeGuest(aliases: readonly string[], op?: OpLog): Promise<GuestViews> {
    const vm = this.vm;
    if (!vm || !this.guestLoop) return new Map();
    if (this.guestLoop.agentSilent) op?.('guest agent silent at its last probe: not waited for');
    const want = new Set(aliases);
    return this.guestLoop.now(probedDimms(vm).filter((d) => want.has(d.alias)));
  }

  /** Ask the guest again soon (after an operation that may have changed its answer). */
  reprobeGuest(): void {
    this.guestLoop?.kick();
  }

  private applyGuest(dimms: readonly ProbedDimm[], views: GuestViews): void {
    const vm = this.vm;
    if (!vm?.active) return;
    const now = new Map(probedDimms(vm).map((d) => [d.alias, d]));
    const next = new Map<string, GuestDimmView>();
    for (const [alias, v] of vm.guest) if (now.has(alias)) next.set(alias, v);
    // Only answers about the DIMM as it still is (same alias at the same address).
    for (const d of dimms) {
      const v = views.get(d.alias);
      if (v && now.get(d.alias)?.base === d.base) next.set(d.alias, Object.freeze({ ...v }));
    }
    vm.guest = next;
    this.publish();
  }

  /** Records what updateNextRun wrote into the definition. */
  nextRunUpdated(
    inactiveMemoryKiB: number,
    nextRunGuaranteed: number | null,
    inactiveVirtioRequestedKiB?: ReadonlyMap<string, number> | null,
  ): void {
    if (!this.vm) return;
    if (inactiveVirtioRequestedKiB !== undefined)
      this.vm.inactiveVirtioRequestedKiB = inactiveVirtioRequestedKiB;
    this.vm.inactiveMemoryKiB = inactiveMemoryKiB;
    this.vm.nextRunGuaranteed = nextRunGuaranteed;
  }

  // ---- device events ----

  /**
   * Applies one device event and its effects. Returns the metadata write
   * when the transition asked for one.
   */
  submit(e: DeviceEvent): Promise<void> | undefined {
    if (this.applying) {
      this.queued.push(e);
      return undefined;
    }
    this.applying = true;
    try {
      const written = this.apply(e);
      while (this.queued.length) this.apply(this.queued.shift()!);
      return written;
    } finally {
      this.applying = false;
    }
  }

  private apply(e: DeviceEvent): Promise<void> | undefined {
    const vm = this.vm;
    if (!vm) return undefined;
    const t = next(vm.devices, e);
    vm.devices = t.state;
    // Only an unplug's mark is waited for (its detach follows the write); the
    // others leave after this turn's replies and notifications (persist).
    const later = e.type !== 'unplug-requested';
    let written: Promise<void> | undefined;
    for (const eff of t.effects) {
      const w = this.effect(vm, eff, later);
      if (w) written = w;
    }
    // Keep metadata's list of present DIMMs current (a plug, a removal nobody asked for).
    if (!written && vm.active && vm.metaBootId === vm.ref.id && !samePresent(vm))
      written = this.persist(later);
    if (written && later) this.background(written, 'metadata write');
    this.syncWatches();
    return written;
  }

  /** Timers for every resize with a deadline whose wait has not ended; none for the others. */
  private syncWatches(): void {
    const tracked = this.vm?.devices.tracked;
    for (const [alias, w] of this.watches) {
      const d = tracked?.get(alias);
      if (d?.phase === 'resizing' && d.deadline !== undefined && !d.ending) continue;
      clearTimeout(w.deadline);
      clearTimeout(w.stall);
      this.watches.delete(alias);
    }
    if (!tracked || this.stopped) return;
    for (const [alias, d] of tracked) {
      if (d.phase !== 'resizing' || d.deadline === undefined || d.ending || this.watches.has(alias)) continue;
      const stallMs = this.stallOf.get(alias) ?? this.deps.resizeStallMs ?? 20_000;
      const gaveUp = (why: 'timeout' | 'stalled') => () =>
        this.submit({ type: 'resize-gave-up', alias, why });
      const deadline = setTimeout(gaveUp('timeout'), Math.max(0, Date.parse(d.deadline) - Date.now()));
      const stall = setTimeout(gaveUp('stalled'), stallMs);
      deadline.unref();
      stall.unref();
      this.watches.set(alias, { deadline, stall, stallMs });
    }
  }

  /** The device moved: its stall period starts again. */
  private moved(alias: string): void {
    const w = this.watches.get(alias);
    if (!w) return;
    clearTimeout(w.stall);
    w.stall = setTimeout(() => this.submit({ type: 'resize-gave-up', alias, why: 'stalled' }), w.stallMs);
    w.stall.unref();
  }

  private effect(vm: VmRecord, eff: Effect, later: boolean): Promise<void> | undefined {
    switch (eff.type) {
      case 'drop':
        vm.dom = withoutDimm(vm.dom, eff.alias);
        // A read already under way may return the XML from before the removal.
        this.dropped.set(eff.alias, this.readsStarted);
        return undefined;
      case 'clamp-guaranteed': {
        const g = eff.requested ?? vm.meta.guaranteedMiB;
        if (g !== null) vm.meta.guaranteedMiB = Math.min(g, vm.dom.memory);
        return undefined;
      }
      case 'persist':
        return this.persist(later);
      case 'publish':
        this.publish(eff.defer === true);
        return undefined;
      case 'settle': {
        const resolve = this.waiters.get(eff.alias);
        if (!resolve) return undefined;
        this.waiters.delete(eff.alias);
        resolve({
          answer: eff.answer,
          memSize: vm.dom.memory,
          memGuaranteedSize: vm.stats.memGuaranteedSize,
        });
        return undefined;
      }
      case 'notify':
        if (eff.outcome.kind === 'removed') {
          if (eff.outcome.late) {
            this.deps.log.info({ vmId: vm.uuid, alias: eff.alias }, 'late removal completed');
          }
          this.deps.events.emit('deviceRemoved', vm.uuid, {
            alias: eff.alias,
            memSize: vm.dom.memory,
            late: eff.outcome.late,
          });
        } else {
          this.deps.events.emit('deviceRemovalFailed', vm.uuid, {
            alias: eff.alias,
            reason: eff.outcome.reason,
          });
        }
        return undefined;
      case 'reread':
        this.background(this.reload({}), 'refresh of the live XML');
        return undefined;
      case 'resize-answer': {
        const resolve = this.resizeWaiters.get(eff.alias);
        if (!resolve) return undefined;
        this.resizeWaiters.delete(eff.alias);
        this.stallOf.delete(eff.alias);
        resolve({ answer: eff.answer, memSize: vm.dom.memory });
        return undefined;
      }
      case 'progress':
        this.moved(eff.alias);
        this.deps.sizeChanges?.report(vm.uuid, {
          alias: eff.alias,
          requested: eff.requested,
          current: eff.current,
        });
        return undefined;
      case 'resize-notify':
        this.resizeEnded(vm, eff.alias, eff.outcome);
        return undefined;
      case 'set-requested':
        this.background(
          this.setRequested(eff.alias, eff.requested).catch((err: unknown) => {
            this.deps.log.warn(
              { vmId: vm.uuid, alias: eff.alias, ...libvirtDetails(err) },
              'could not settle requested to current',
            );
            this.submit({ type: 'settle-failed', alias: eff.alias });
          }),
          'settling requested to current',
        );
        return undefined;
    }
  }

  /** A resize nobody waited for ended: its last size (late), or its failure. */
  private resizeEnded(vm: VmRecord, alias: string, o: ResizeOutcome): void {
    if (o.kind === 'resized') {
      this.deps.log.info({ vmId: vm.uuid, alias, current: o.current }, 'late resize completed');
      this.deps.sizeChanges?.report(vm.uuid, {
        alias,
        requested: o.requested,
        current: o.current,
        late: true,
      });
      this.deps.sizeChanges?.flush(vm.uuid, alias);
      return;
    }
    this.deps.log.warn(
      {
        vmId: vm.uuid,
        alias,
        reason: o.reason,
        requested: o.requested,
        current: o.current,
        requestedNow: o.requestedNow,
      },
      'late resize stopped short',
    );
    this.deps.sizeChanges?.flush(vm.uuid, alias);
    this.deps.events.emit('memoryDeviceResizeFailed', vm.uuid, {
      alias,
      reason: o.reason,
      requested: o.requested,
      current: o.current,
      requestedNow: o.requestedNow,
      late: true,
    });
  }

  /** Asks libvirt for `requested` MiB on a virtio-mem device (a settle nobody waits for), then re-reads. */
  private async setRequested(alias: string, requested: number): Promise<void> {
    const vm = this.vm;
    const dev = vm?.dom.virtioMem.filter(isLiveVirtioMem).find((v) => v.alias === alias);
    if (!vm?.active || !dev) throw new Error(`no virtio-mem device ${alias} on a running VM`);
    await this.deps.client.updateDeviceFlags(vm.ref, resizeXml(dev, requested), DomainAffect.LIVE);
    // Behind the reads under way (one begun before the update may show the
    // old requested); the machine's re-read then tells the end.
    await this.read(async () => {
      this.submit({ type: 'settle-landed', alias });
    });
  }

  // ---- reloads ----

  /** Re-reads the VM from libvirt and applies it, after the reads queued before; undefined when it is gone. */
  reload(how: ReloadHow = {}, seen?: DomainRef): Promise<VmRecord | undefined> {
    // An event's or a listing's ref carries the current runtime id (a new boot's).
    if (seen && seen.id >= 0) this.ref = { ...this.ref, id: seen.id };
    this.readsQueued++;
    return this.read(async () => {
      this.readsQueued--;
      if (this.detached) return this.deps.reloadCurrent(this.ref, how);
      const all = this.retry ? mergeHow(this.retry.how, how) : how;
      let snap: Snapshot;
      const n = ++this.readsStarted;
      try {
        snap = await readDomain(this.deps.client, this.ref, all, this.vm);
      } catch (err) {
        // A boot read that failed is not retried as one: by the retry the
        // guest may have hot-plugged DIMMs, so the run is adopted instead.
        const { boot: _boot, ...later } = all;
        this.scheduleRetry(later);
        // A resize call must not wait for libvirt to come back: it is told
        // the sizes last read (unless a read queued behind this one may still
        // succeed), and the retry's read reports the end later.
        if (this.readsQueued === 0) this.submit({ type: 'resize-reread-failed' });
        throw err;
      }
      this.cancelRetry();
      return this.applySnapshot(this.withoutDropped(snap, n), all);
    });
  }

  /** Forgets the VM (it is no longer listed), after the reads queued before. */
  forget(): Promise<void> {
    return this.read(async () => {
      this.applyGone();
    });
  }

  private read<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.reads.then(fn);
    this.reads = p.catch(() => undefined);
    return p;
  }

  private scheduleRetry(how: ReloadHow): void {
    if (this.stopped) return;
    const delayMs = this.retry ? Math.min(this.retry.delayMs * 2, RETRY_MAX_MS) : RETRY_FIRST_MS;
    if (this.retry?.timer) clearTimeout(this.retry.timer);
    const timer = setTimeout(() => {
      if (this.retry) this.retry.timer = undefined;
      this.background(this.reload(), 'retried reload');
    }, delayMs);
    timer.unref();
    this.retry = { timer, delayMs, how };
  }

  private cancelRetry(): void {
    if (this.retry?.timer) clearTimeout(this.retry.timer);
    this.retry = undefined;
  }

  /** Stops retrying, for good (the manager closes). */
  stop(): void {
    this.stopped = true;
    this.cancelRetry();
    this.dropHeld();
    this.guestLoop?.stop();
    for (const w of this.watches.values()) {
      clearTimeout(w.deadline);
      clearTimeout(w.stall);
    }
    this.watches.clear();
  }

  get metaWrite(): Promise<void> {
    return this.vm?.metaWrite ?? Promise.resolve();
  }

  /** Read `n` as of now: DIMMs removed since it was sent are gone from it too. */
  private withoutDropped(snap: Snapshot, n: number): Snapshot {
    let out = snap;
    for (const [alias, at] of this.dropped) {
      // Every later read was sent after this removal (reads apply in order).
      if (at < n) this.dropped.delete(alias);
      else if (out.kind === 'live' && isActive(out.state)) out = { ...out, dom: withoutDimm(out.dom, alias) };
    }
    return out;
  }

  private applySnapshot(snap: Snapshot, how: ReloadHow): VmRecord | undefined {
    if (snap.kind === 'gone') {
      this.applyGone();
      return undefined;
    }
    const { state, dom, persistent, definition } = snap;
    const active = isActive(state);
    const firstSight = !this.vm;
    const vm = this.vm ?? this.newRecord(snap);
    const wasActive = vm.active && !firstSight;
    // A live ref carries the runtime id; keep it for calls.
    vm.ref = {
      name: dom.name,
      uuid: this.uuid,
      id: active ? (snap.ref.id >= 0 ? snap.ref.id : vm.ref.id) : -1,
    };
    // The runtime id comes from events and listings (reload's `seen`), not from a read.
    this.ref = { ...this.ref, name: dom.name };
    vm.state = state;
    vm.status = statusOf(state);
    vm.active = active;
    vm.persistent = persistent;
    vm.dom = dom;
    if (definition) {
      vm.inactiveMemoryKiB = definition.memoryKiB;
      vm.inactiveVirtioRequestedKiB = new Map(
        definition.virtioMem.flatMap((v) => (v.alias === null ? [] : [[v.alias, v.requestedKiB] as const])),
      );
      vm.nextRunGuaranteed = definition.metadata?.guaranteedMiB ?? null;
    } else if (!persistent) {
      vm.inactiveMemoryKiB = null;
      vm.inactiveVirtioRequestedKiB = null;
      vm.nextRunGuaranteed = null;
    }
    this.vm = vm;

    if (!active) {
      this.submit({ type: 'vm-stopped' });
      vm.guest = new Map();
      vm.meta = { guaranteedMiB: null, bootDimms: null };
      vm.metaBootId = null;
      vm.recordedPresent = null;
      vm.issuedPresent = null;
      if (!persistent) {
        this.applyGone();
        return undefined;
      }
      this.publish();
    } else if (how.boot) {
      this.adoptBoot(vm);
    } else if (!wasActive || vm.metaBootId !== vm.ref.id) {
      this.adoptRun(vm, definition);
    } else {
      // Sizes first: the stats the re-read publishes carry each device's phase for its new sizes.
      for (const v of virtioSizes(dom)) this.submit({ type: 'size-changed', ...v });
      this.submit({ type: 'observed', present: presentAliases(dom) });
    }
    return vm;
  }

  private newRecord(snap: Snapshot & { kind: 'live' }): VmRecord {
    const vm: VmRecord = {
      uuid: this.uuid,
      ref: { ...snap.ref, uuid: this.uuid },
      state: snap.state,
      status: statusOf(snap.state),
      active: false,
      persistent: snap.persistent,
      dom: snap.dom,
      inactiveMemoryKiB: null,
      inactiveVirtioRequestedKiB: null,
      nextRunGuaranteed: null,
      meta: { guaranteedMiB: null, bootDimms: null },
      devices: EMPTY,
      metaBootId: null,
      stats: undefined as never,
      metaWrite: Promise.resolve(),
      recordedPresent: null,
      issuedPresent: null,
      guest: new Map(),
    };
    return vm;
  }

  /** A boot we saw start: everything present was onlined by the guest at boot. */
  private adoptBoot(vm: VmRecord): void {
    const present = presentAliases(vm.dom);
    const md = vm.dom.metadata ?? emptyMetadata();
    vm.guest = new Map();
    vm.meta = { guaranteedMiB: md.guaranteedMiB, bootDimms: present };
    this.defaultGuaranteed(vm);
    vm.metaBootId = vm.ref.id;
    // A new run's live metadata lists nothing yet, whatever the last run's did.
    vm.recordedPresent = null;
    vm.issuedPresent = null;
    this.deps.log.info({ vmId: vm.uuid, bootDimms: present }, 'VM started: recorded boot-time DIMMs');
    // `booted` persists the new run's metadata.
    this.submit({ type: 'booted', present, virtio: virtioSizes(vm.dom) });
  }

  /** A run we did not see start (restart recovery, first sight): take its metadata and marks. */
  private adoptRun(vm: VmRecord, definition: VmRecord['dom'] | null): void {
    const present = presentAliases(vm.dom);
    const md = vm.dom.metadata ? structuredClone(vm.dom.metadata) : emptyMetadata();
    const facts: RunFacts = { guaranteedMiB: md.guaranteedMiB, bootDimms: md.bootDimms };
    let write = false;
    if (facts.bootDimms === null) {
      // First seen running without our metadata: DIMMs with our user alias
      // (ua-…) were plugged by an engine; libvirt-named ones (dimmN) and any
      // in the persistent definition are taken as boot-time.
      const defined = new Set(definition && vm.persistent ? presentAliases(definition) : []);
      facts.bootDimms = present.filter((a) => !isUserAlias(a) || defined.has(a));
      write = true;
      this.deps.log.warn(
        {
          vmId: vm.uuid,
          assumedBootDimms: facts.bootDimms,
          assumedHotplugged: present.filter((a) => !facts.bootDimms?.includes(a)),
        },
        'VM first seen running without vmhostd metadata: assumed ua-* DIMMs not in the definition were hot-plugged, the others present at boot',
      );
    }
    vm.meta = facts;
    write = this.defaultGuaranteed(vm) || write;
    vm.metaBootId = vm.ref.id;
    // What metadata listed as present is durable; gone now means removed while we were away.
    vm.recordedPresent = md.present ? new Set(md.present) : null;
    vm.issuedPresent = md.present ?? null;
    // Unplugs that completed while we were away are reported here (late).
    const written = this.submit({
      type: 'adopted',
      present,
      marks: md.unplugging,
      ...(md.present ? { recorded: md.present } : {}),
      virtio: virtioSizes(vm.dom),
      ...(md.resizing ? { resizeMarks: md.resizing } : {}),
    });
    if (write && !written) this.background(this.persist(true), 'metadata write');
  }

  private defaultGuaranteed(vm: VmRecord): boolean {
    if (vm.meta.guaranteedMiB !== null) return false;
    vm.meta.guaranteedMiB = Math.min(vm.nextRunGuaranteed ?? vm.dom.memory, vm.dom.memory);
    return true;
  }

  private applyGone(): void {
    this.submit({ type: 'vm-stopped' });
    this.cancelRetry();
    this.guestLoop?.stop();
    this.dropHeld();
    const vm = this.vm;
    if (!this.detached) {
      this.detached = true;
      this.deps.detach(this.uuid);
    }
    if (!vm) return;
    this.vm = undefined;
    vm.state = { state: 5, reason: 0 };
    vm.status = 'Down';
    vm.active = false;
    this.deps.log.info({ vmId: this.uuid, vmName: vm.dom.name }, 'VM gone');
    this.deps.events.emit('vmStatus', buildStats(vm));
  }

  // ---- effects ----

  /**
   * Rebuilds the cached stats (what VM.getStats answers) and notifies when
   * anything visible changed since clients last heard. `defer`: the notice
   * waits ANNOUNCE_AFTER_MS, and is dropped if a later publish comes first
   * (that one tells the newer state, or nothing if it is what they heard).
   */
  publish(defer = false): void {
    const vm = this.vm;
    if (!vm) return;
    const prev = vm.stats as VmRecord['stats'] | undefined;
    vm.stats = buildStats(vm);
    if (this.detached) return;
    if (defer) {
      if (!this.held && statsChanged(prev, vm.stats)) {
        const timer = setTimeout(() => this.announceHeld(), ANNOUNCE_AFTER_MS);
        timer.unref();
        this.held = { heard: prev, timer };
      }
    } else {
      const heard = this.held ? this.held.heard : prev;
      this.dropHeld();
      if (statsChanged(heard, vm.stats)) this.deps.events.emit('vmStatus', vm.stats);
    }
    // A plug, a removal or a boot changes what there is to ask the guest about.
    this.guestLoop?.changed();
  }

  private announceHeld(): void {
    this.held = undefined;
    const vm = this.vm;
    if (vm && !this.detached) this.deps.events.emit('vmStatus', vm.stats);
  }

  private dropHeld(): void {
    if (this.held) clearTimeout(this.held.timer);
    this.held = undefined;
  }

  /**
   * Writes our metadata; writes of one VM are chained and each sends the state
   * of its time. `later`: nothing waits for it, so it is sent in the next
   * turn's check phase, after the replies and notifications of this turn are
   * written (they leave in this turn's check phase; an immediate queued now
   * might run before theirs): a removal's reply does not wait for the call's
   * encoding and for the write that wakes libvirtd (issue 12).
   */
  private persist(later = false): Promise<void> {
    const vm = this.vm;
    if (!vm) return Promise.resolve();
    vm.issuedPresent = [...vm.devices.present];
    const turnEnd = later
      ? new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)))
      : undefined;
    const write = async (): Promise<void> => {
      if (turnEnd) await turnEnd;
      if (!vm.active) return;
      const md = metadataOf(vm);
      await this.deps.client.setMetadata(
        vm.ref,
        MetadataType.ELEMENT,
        buildMetadata(md),
        METADATA_PREFIX,
        METADATA_URI,
        DomainAffect.LIVE,
      );
      vm.recordedPresent = new Set(md.present);
    };
    const p = vm.metaWrite.then(write, write);
    vm.metaWrite = p.catch(() => undefined);
    return p;
  }

  private background(p: Promise<unknown>, what: string): void {
    p.catch((err: unknown) => {
      if (isNoDomain(err)) return;
      this.deps.log.error({ vmId: this.uuid, ...libvirtDetails(err) }, `${what} failed`);
    });
  }
}

/** The VM's DIMMs as the guest probe needs them: alias and guest-physical address. */
function probedDimms(vm: VmRecord): ProbedDimm[] {
  // No agent channel: libvirt would refuse the command; the zones stay unknown.
  if (!vm.dom.guestAgent) return [];
  return vm.dom.dimms.flatMap((d) =>
    d.alias !== null && d.base ? [{ alias: d.alias, base: d.base, size: d.size }] : [],
  );
}

/** The live XML's virtio-mem devices and their sizes (MiB), for the machine. */
function virtioSizes(dom: VmRecord['dom']): { alias: string; requested: number; current: number }[] {
  return dom.virtioMem
    .filter(isLiveVirtioMem)
    .map((v) => ({ alias: v.alias, requested: v.requested, current: v.current }));
}

/** Metadata's list of present DIMMs (as last issued) matches the live XML. */
function samePresent(vm: VmRecord): boolean {
  const a = vm.issuedPresent;
  const b = vm.devices.present;
  return a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}
