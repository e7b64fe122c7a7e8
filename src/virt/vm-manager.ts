// The VM registry and the memory operations on it. libvirt is the source of
// truth: the registry is fed by listAllDomains and libvirt events (never by
// polling), each domain's XML is re-read and parsed once per change, and the
// daemon's own facts live in the domain's <metadata>. Operations on one VM go
// through its serial worker; events and refreshes of one VM through another,
// so cached state is applied in order.

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { LibvirtConnectionError, LibvirtError, LibvirtErrorCode } from '../libvirt/errors.js';
import {
  DomainAffect,
  type DomainRef,
  type DomainStateInfo,
  DomainXmlFlags,
  type LibvirtApi,
  type LibvirtClientEvents,
  LifecycleEvent,
  ListDomainsFlags,
  MetadataType,
} from '../libvirt/types.js';
import { DeviceWaiters, type RemovalOutcome } from './device-waiters.js';
import { buildAttachDimmXml, buildDetachDimmXml, isUserAlias, isValidDimmAlias } from './dimm-xml.js';
import { kibToMiB, type ParsedDimm, type ParsedDomain, parseDomainXml } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import { devicesHash } from './hash.js';
import { buildMetadata, emptyMetadata, METADATA_PREFIX, METADATA_URI, type VmMetadata } from './metadata.js';
import { editInactiveMemory } from './next-run-xml.js';
import { bytesToMiB, planMemory } from './planner.js';
import { SerialQueue } from './serial-queue.js';
import { isActive, statusOf } from './status.js';
import type {
  DeviceState,
  SetMemoryResult,
  UnplugResult,
  VmListEntry,
  VmManagerEvents,
  VmStats,
  VmStatsDevice,
  VmStatus,
} from './types.js';

export interface VmManagerOptions {
  log: Logger;
  /** Default wait for a guest to release a DIMM. */
  unplugTimeoutMs: number;
  /** DIMM size granularity (MiB) for hot plug and setMemory increases. */
  dimmAlignmentMiB: number;
  /** Bound on close() waiting for in-flight operations; default unplugTimeoutMs + 10 s. */
  closeTimeoutMs?: number;
  /** Parallel domain loads at start and resync; default 16. */
  loadConcurrency?: number;
  /**
   * Which domains this manager owns, by name (default: all). Lets a host run
   * vmhostd beside another management stack, and keeps parallel test
   * daemons on one libvirtd out of each other's VMs.
   */
  manages?: (domainName: string) => boolean;
}

export interface HotplugSpec {
  size: number;
  node: number;
  alias?: string;
}

export interface HotunplugSpec {
  size: number;
  node: number;
  alias: string;
  address?: { slot?: number; base?: string };
}

interface VmRecord {
  uuid: string;
  ref: DomainRef;
  state: DomainStateInfo;
  status: VmStatus;
  active: boolean;
  persistent: boolean;
  /** Live definition when active, else the inactive one. */
  dom: ParsedDomain;
  /** Next-run <memory> (KiB) of a persistent domain. */
  inactiveMemoryKiB: number | null;
  /** Guaranteed MiB in the next-run metadata, null when unset. */
  nextRunGuaranteed: number | null;
  /** Our live metadata; in memory it is authoritative, libvirt holds the copy. */
  meta: VmMetadata;
  /** The runtime id `meta` belongs to (a new boot resets it). */
  metaBootId: number | null;
  /** Aliases an operation of ours is unplugging right now. */
  inFlight: Set<string>;
  stats: VmStats;
  metaWrite: Promise<void>;
}

type OpLog = (step: string, extra?: Record<string, unknown>) => void;

type WaitOutcome =
  | RemovalOutcome
  | { kind: 'timeout' }
  | { kind: 'libvirt-error'; err: unknown }
  | { kind: 'disconnected'; err: unknown };

const DOWN_STATE: DomainStateInfo = { state: 5, reason: 0 };

/**
 * How long an unplug whose detach lost the libvirt connection waits for the
 * reconnect (whose resync may show the DIMM gone) before failing clearly.
 */
const RECONNECT_GRACE_MS = 5_000;

/** How long a detach that failed because QEMU went away waits for the stop event. */
const STOP_GRACE_MS = 3_000;

function libvirtDetails(err: unknown): Record<string, unknown> {
  if (err instanceof LibvirtError) return { libvirtCode: err.code, libvirtMessage: err.message };
  return { error: err instanceof Error ? err.message : String(err) };
}

function isNoDomain(err: unknown): boolean {
  return err instanceof LibvirtError && err.code === LibvirtErrorCode.NO_DOMAIN;
}

function newOpId(): string {
  return `op-${randomUUID().slice(0, 8)}`;
}

async function mapLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class VmManager extends EventEmitter<VmManagerEvents> {
  private readonly vms = new Map<string, VmRecord>();
  /** Memory operations, one worker per VM. */
  private readonly ops = new SerialQueue();
  /** Event handling and XML refreshes, one worker per VM. */
  private readonly sync = new SerialQueue();
  private readonly waiters = new DeviceWaiters();
  private readonly log: Logger;
  private closed = false;
  private readonly clientListeners: {
    [K in keyof LibvirtClientEvents]?: (...a: LibvirtClientEvents[K]) => void;
  } = {};

  private constructor(
    private readonly client: LibvirtApi,
    private readonly opts: VmManagerOptions,
  ) {
    super();
    this.log = opts.log;
  }

  /** Lists domains, reads their XML and metadata, subscribes to events and reconciles. */
  static async start(client: LibvirtApi, opts: VmManagerOptions): Promise<VmManager> {
    return VmManager.create(client, opts).open();
  }

  /** A manager that has not touched libvirt yet: attach listeners, then open(), to miss no event. */
  static create(client: LibvirtApi, opts: VmManagerOptions): VmManager {
    return new VmManager(client, opts);
  }

  async open(): Promise<this> {
    this.subscribe();
    try {
      await this.resync('start');
    } catch (err) {
      this.unsubscribe();
      throw err;
    }
    return this;
  }

  private manages(ref: DomainRef): boolean {
    return this.opts.manages?.(ref.name) ?? true;
  }

  // ---- queries (from cache, no libvirt call) ----

  list(): VmListEntry[] {
    return [...this.vms.values()].map((vm) => ({ vmId: vm.uuid, vmName: vm.dom.name, status: vm.status }));
  }

  stats(vmId: string): VmStats {
    return this.require(vmId).stats;
  }

  allStats(): VmStats[] {
    return [...this.vms.values()].map((vm) => vm.stats);
  }

  // ---- operations ----

  async hotplugMemory(
    vmId: string,
    mem: HotplugSpec,
    opts: { memGuaranteedSize?: number; opId?: string } = {},
  ): Promise<VmStats> {
    const uuid = vmId.toLowerCase();
    const op = this.opLog('hotplug', uuid, opts.opId, mem.alias);
    this.require(uuid);
    this.checkOpen();
    return this.ops.run(uuid, async () => {
      op('started', { size: mem.size, node: mem.node });
      const vm = await this.plugOne(uuid, mem, opts.memGuaranteedSize, op, true);
      op('done', { memSize: vm.stats.memSize });
      return vm.stats;
    });
  }

  async hotunplugMemory(
    vmId: string,
    mem: HotunplugSpec,
    opts: { memGuaranteedSize?: number; timeoutMs?: number; opId?: string } = {},
  ): Promise<UnplugResult> {
    const uuid = vmId.toLowerCase();
    const op = this.opLog('hotunplug', uuid, opts.opId, mem.alias);
    // Answer what we can at once, not behind other operations on the VM.
    this.checkUnplug(this.require(uuid), mem);
    this.checkOpen();
    return this.ops.run(uuid, async () => {
      op('started', {
        size: mem.size,
        node: mem.node,
        timeoutMs: opts.timeoutMs ?? this.opts.unplugTimeoutMs,
      });
      const vm = this.require(uuid);
      const dimm = this.checkUnplug(vm, mem);
      const r = await this.unplugOne(vm, dimm, {
        guaranteed: opts.memGuaranteedSize,
        timeoutMs: opts.timeoutMs ?? this.opts.unplugTimeoutMs,
        nextRun: true,
        op,
      });
      return {
        status: 'removed',
        alias: dimm.alias,
        memSize: r.memSize,
        memGuaranteedSize: r.memGuaranteedSize,
      };
    });
  }

  async setMemory(
    vmId: string,
    memoryBytes: number,
    opts: { guaranteedBytes?: number; timeoutMs?: number; opId?: string } = {},
  ): Promise<SetMemoryResult> {
    const uuid = vmId.toLowerCase();
    const op = this.opLog('setMemory', uuid, opts.opId);
    if (!Number.isSafeInteger(memoryBytes) || memoryBytes <= 0) {
      throw invalid(
        'memory',
        'positive integer (bytes)',
        'memory must be a positive integer number of bytes',
      );
    }
    if (opts.guaranteedBytes !== undefined) {
      if (!Number.isSafeInteger(opts.guaranteedBytes) || opts.guaranteedBytes < 0) {
        throw invalid(
          'guaranteed',
          'non-negative integer (bytes)',
          'guaranteed must be a non-negative integer',
        );
      }
      if (opts.guaranteedBytes > memoryBytes) {
        throw invalid('guaranteed', '<= memory', 'guaranteed memory must not exceed memory');
      }
    }
    this.require(uuid);
    this.checkOpen();
    return this.ops.run(uuid, () => this.setMemoryNow(uuid, memoryBytes, opts, op));
  }

  /** Stops taking operations and waits (bounded) for those in flight. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const bound = this.opts.closeTimeoutMs ?? this.opts.unplugTimeoutMs + 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), bound);
    });
    const drained = this.ops.drain().then(() => false);
    if (await Promise.race([drained, timedOut])) {
      this.log.warn({ pendingVms: this.ops.size, boundMs: bound }, 'closing with operations still in flight');
    }
    clearTimeout(timer);
    // Metadata writes left behind by finished operations land before we go.
    await Promise.race([Promise.all([...this.vms.values()].map((vm) => vm.metaWrite)), timedOut]);
    this.unsubscribe();
  }

  // ---- operation bodies (run inside the VM's serial worker) ----

  private async plugOne(
    uuid: string,
    mem: HotplugSpec,
    guaranteed: number | undefined,
    op: OpLog,
    updateNextRun: boolean,
  ): Promise<VmRecord> {
    const vm = this.require(uuid);
    this.checkRunning(vm, 'hotplug');
    const dom = vm.dom;
    const align = this.opts.dimmAlignmentMiB;
    if (!Number.isSafeInteger(mem.size) || mem.size <= 0 || mem.size % align !== 0) {
      throw invalid(
        'memory.size',
        `positive multiple of ${align}`,
        `DIMM size must be a positive multiple of ${align} MiB`,
      );
    }
    const cells = dom.numaCells.map((c) => c.id);
    if (!Number.isSafeInteger(mem.node) || !cells.includes(mem.node)) {
      throw invalid(
        'memory.node',
        `one of [${cells.join(', ')}]`,
        `node ${mem.node} is not a NUMA cell of the VM (cells: ${cells.join(', ') || 'none'})`,
      );
    }
    const alias = mem.alias ?? `ua-${randomUUID()}`;
    if (!isUserAlias(alias)) {
      throw invalid(
        'memory.alias',
        'matches ^ua-[A-Za-z0-9-]+$',
        'alias must look like ua-<letters, digits, ->',
      );
    }
    if (dom.dimms.some((d) => d.alias === alias)) {
      throw invalid('memory.alias', 'unique in the VM', `the VM already has a device with alias ${alias}`);
    }
    if (dom.slots === 0 || dom.maxMemoryKiB === null) {
      throw new VirtError(
        'hotplug',
        'no-free-slot',
        'the VM has no memory hotplug slots (<maxMemory slots>)',
      );
    }
    const sizeKiB = mem.size * 1024;
    if (dom.memoryKiB + sizeKiB > dom.maxMemoryKiB) {
      throw invalid(
        'memory.size',
        `<= ${kibToMiB(dom.maxMemoryKiB - dom.memoryKiB)} (maxMemory - memory)`,
        `a ${mem.size} MiB DIMM would exceed the VM's maxMemory of ${kibToMiB(dom.maxMemoryKiB)} MiB`,
      );
    }
    const used = new Set(dom.dimms.map((d) => d.slot));
    let slot = -1;
    for (let s = 0; s < dom.slots; s++) {
      if (!used.has(s)) {
        slot = s;
        break;
      }
    }
    if (slot < 0) throw new VirtError('hotplug', 'no-free-slot', `all ${dom.slots} memory slots are in use`);
    const newMem = dom.memory + mem.size;
    if (guaranteed !== undefined) this.checkGuaranteed(guaranteed, newMem, 'memGuaranteedSize');

    const nextRunMatch = vm.persistent && vm.inactiveMemoryKiB === dom.memoryKiB;
    const xml = buildAttachDimmXml({ sizeMiB: mem.size, node: mem.node, alias, slot });
    op('attach requested', { alias, slot });
    try {
      await this.client.attachDeviceFlags(vm.ref, xml, DomainAffect.LIVE);
    } catch (err) {
      op('attach failed', libvirtDetails(err));
      throw new VirtError(
        'hotplug',
        'libvirt-error',
        `attach failed: ${errMessage(err)}`,
        libvirtDetails(err),
      );
    }
    const after = await this.refresh(vm.ref);
    if (!after?.dom.dimms.some((d) => d.alias === alias)) {
      throw new VirtError('hotplug', 'libvirt-error', `DIMM ${alias} is not in the live XML after attach`);
    }
    op('attached', { alias, slot, memSize: after.dom.memory });
    if (guaranteed !== undefined) {
      after.meta.guaranteedMiB = guaranteed;
      await this.persistMeta(after);
    }
    if (updateNextRun && nextRunMatch && after.inactiveMemoryKiB !== null) {
      await this.updateNextRun(
        after,
        after.inactiveMemoryKiB + sizeKiB,
        new Map([[mem.node, sizeKiB]]),
        null,
        op,
      );
    }
    this.publish(after);
    return after;
  }

  private async unplugOne(
    vm: VmRecord,
    dimm: ParsedDimm & { alias: string },
    o: { guaranteed: number | undefined; timeoutMs: number; nextRun: boolean; op: OpLog },
  ): Promise<{ memSize: number; memGuaranteedSize: number }> {
    const { alias } = dimm;
    const { op } = o;
    if (o.guaranteed !== undefined)
      this.checkGuaranteed(o.guaranteed, vm.dom.memory - dimm.size, 'memGuaranteedSize');
    if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) {
      throw invalid('timeout', '> 0', 'timeout must be positive');
    }
    if (vm.dom.balloonActive) {
      op('warning: the VM has an active memory balloon; hot unplug with ballooning is not recommended');
    }
    const liveKiBBefore = vm.dom.memoryKiB;
    const nextRunMatch = o.nextRun && vm.persistent && vm.inactiveMemoryKiB === liveKiBBefore;
    const xml = buildDetachDimmXml({
      sizeMiB: dimm.size,
      node: dimm.node,
      alias,
      ...(dimm.slot !== null ? { slot: dimm.slot } : {}),
      ...(dimm.base !== null ? { base: dimm.base } : {}),
    });

    vm.inFlight.add(alias);
    vm.meta.unplugging.push({ alias, since: new Date().toISOString() });
    const unmark = (): void => {
      vm.meta.unplugging = vm.meta.unplugging.filter((u) => u.alias !== alias);
    };
    try {
      await this.persistMeta(vm);
    } catch (err) {
      unmark();
      vm.inFlight.delete(alias);
      this.publish(vm);
      op('recording the unplug in metadata failed', libvirtDetails(err));
      if (!(await this.stillActive(vm))) {
        throw new VirtError('hotunplug', 'vm-gone', `the VM stopped while unplugging ${alias}`, { alias });
      }
      throw new VirtError('hotunplug', 'libvirt-error', `cannot record the unplug: ${errMessage(err)}`, {
        alias,
        ...libvirtDetails(err),
      });
    }
    op('marked unplugging');

    // Interest first: libvirt may send the event before the detach reply.
    const waiter = this.waiters.wait(vm.uuid, alias);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<WaitOutcome>((r) => {
      timer = setTimeout(() => r({ kind: 'timeout' }), o.timeoutMs);
    });
    let outcome: WaitOutcome;
    try {
      const detach = this.client.detachDeviceFlags(vm.ref, xml, DomainAffect.LIVE).then(
        () => ({ kind: 'detached' as const }),
        (err: unknown) => ({ kind: 'detach-failed' as const, err }),
      );
      op('detach requested');
      // Shown as unplugging now that the mark is durable; published once the
      // detach is on its way, to keep the notification off the critical path.
      this.publish(vm);
      const first = await Promise.race([waiter.promise, timeout, detach]);
      if (first.kind === 'detached') {
        op('detach accepted, waiting for the guest');
        outcome = await Promise.race([waiter.promise, timeout]);
      } else if (first.kind === 'detach-failed') {
        outcome = await this.classifyDetachFailure(vm, alias, first.err, waiter.promise, timeout, op);
      } else {
        outcome = first;
      }
    } finally {
      clearTimeout(timer);
      waiter.cancel();
    }

    const current = this.vms.get(vm.uuid);
    switch (outcome.kind) {
      case 'removed': {
        // The event's re-read of the live XML started after the removal: it confirms it.
        const reread = outcome.refreshed
          ? outcome.refreshed.then(
              () => this.vms.get(vm.uuid),
              () => this.refresh(vm.ref),
            )
          : this.refresh(vm.ref);
        const after = (await reread) ?? current ?? vm;
        unmark();
        after.meta.unplugging = after.meta.unplugging.filter((u) => u.alias !== alias);
        const memSize = after.dom.memory;
        const g = o.guaranteed ?? after.meta.guaranteedMiB ?? memSize;
        after.meta.guaranteedMiB = Math.min(g, memSize);
        // Clearing the mark is off the reply's path: the removal is already
        // confirmed by libvirt, and if we died before the write landed the
        // restart would only report the removal once more (late: true).
        // Writes to one domain's metadata stay ordered (persistMeta chains them).
        void this.persistMeta(after).catch((err: unknown) =>
          op('metadata update failed', libvirtDetails(err)),
        );
        if (nextRunMatch && after.inactiveMemoryKiB !== null) {
          await this.updateNextRun(
            after,
            after.inactiveMemoryKiB - dimm.sizeKiB,
            new Map([[dimm.node, -dimm.sizeKiB]]),
            null,
            op,
          );
        }
        after.inFlight.delete(alias);
        vm.inFlight.delete(alias);
        this.publish(after);
        op('removed', { memSize, memGuaranteedSize: after.stats.memGuaranteedSize });
        this.emit('deviceRemoved', vm.uuid, { alias, memSize, late: false });
        return { memSize, memGuaranteedSize: after.stats.memGuaranteedSize };
      }
      case 'disconnected': {
        // The request may have reached the guest: like a timeout, the removal
        // stays requested and a later release is reported (late: true).
        vm.inFlight.delete(alias);
        this.publish(current ?? vm);
        op('failed: libvirt connection lost, removal stays requested', libvirtDetails(outcome.err));
        throw new VirtError(
          'hotunplug',
          'libvirt-error',
          `lost the connection to libvirt while unplugging ${alias}; the removal may still complete: the DIMM stays unplugging and a late device_removed follows if the guest releases it`,
          { alias, ...libvirtDetails(outcome.err) },
        );
      }
      case 'timeout': {
        // The removal stays requested: the mark stays, and a later
        // device-removed event finishes the bookkeeping (late: true).
        vm.inFlight.delete(alias);
        this.publish(current ?? vm);
        op('timed out, removal stays requested', { timeoutMs: o.timeoutMs });
        throw new VirtError(
          'hotunplug',
          'timeout',
          `the guest did not release ${alias} within ${o.timeoutMs} ms; the removal stays requested`,
          { alias, timeoutMs: o.timeoutMs },
        );
      }
      default: {
        const reason = outcome.kind === 'rejected' ? 'guest-rejected' : outcome.kind;
        unmark();
        vm.inFlight.delete(alias);
        const still = this.vms.get(vm.uuid);
        if (still?.active) {
          await this.persistMeta(still).catch((err: unknown) =>
            op('metadata update failed', libvirtDetails(err)),
          );
          this.publish(still);
        }
        const details = outcome.kind === 'libvirt-error' ? libvirtDetails(outcome.err) : {};
        op(`failed: ${reason}`, details);
        this.emit('deviceRemovalFailed', vm.uuid, { alias, reason });
        const message =
          reason === 'guest-rejected'
            ? `the guest rejected the unplug of ${alias}`
            : reason === 'vm-gone'
              ? `the VM stopped while unplugging ${alias}`
              : `detach of ${alias} failed: ${errMessage(outcome.kind === 'libvirt-error' ? outcome.err : '')}`;
        throw new VirtError('hotunplug', reason, message, { alias, ...details });
      }
    }
  }

  private async classifyDetachFailure(
    vm: VmRecord,
    alias: string,
    err: unknown,
    waiter: Promise<RemovalOutcome>,
    timeout: Promise<WaitOutcome>,
    op: OpLog,
  ): Promise<WaitOutcome> {
    op('detach failed', libvirtDetails(err));
    // The event may have settled the waiter already; it is the better answer.
    if (!this.waiters.has(vm.uuid, alias)) return waiter;
    // libvirt 9 fails the detach itself when the guest rejects (and also sends
    // device-removal-failed).
    if (err instanceof Error && /rejected by the guest/i.test(err.message)) return { kind: 'rejected' };
    // The request may have gone through before the connection dropped; the
    // resync after reconnecting settles the waiter if the DIMM is gone.
    if (err instanceof LibvirtConnectionError) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<null>((r) => {
        timer = setTimeout(() => r(null), RECONNECT_GRACE_MS);
      });
      const settled = await Promise.race([waiter, timeout, grace]);
      clearTimeout(timer);
      if (settled) return settled;
      // Still cut off: say so now rather than at the timeout.
      if (!this.client.connected) return { kind: 'disconnected', err };
      return Promise.race([waiter, timeout]);
    }
    // A VM stopping under the detach makes it fail with whatever libvirt says.
    if (err instanceof LibvirtError) {
      if (!(await this.stillActive(vm))) return { kind: 'vm-gone' };
      // QEMU dying fails the detach ("End of file from qemu monitor") a moment
      // before libvirt reports the stop: give the lifecycle event a short while.
      if (/qemu monitor|not running/i.test(err.message)) {
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<null>((r) => {
          timer = setTimeout(() => r(null), STOP_GRACE_MS);
        });
        const settled = await Promise.race([waiter, grace]);
        clearTimeout(timer);
        if (settled) return settled;
        if (!(await this.stillActive(vm))) return { kind: 'vm-gone' };
      }
    }
    return { kind: 'libvirt-error', err };
  }

  private async stillActive(vm: VmRecord): Promise<boolean> {
    try {
      return isActive(await this.client.getState(vm.ref));
    } catch (err) {
      return !isNoDomain(err);
    }
  }

  private async setMemoryNow(
    uuid: string,
    memoryBytes: number,
    opts: { guaranteedBytes?: number; timeoutMs?: number },
    op: OpLog,
  ): Promise<SetMemoryResult> {
    let vm = this.require(uuid);
    this.checkRunning(vm, 'hotunplug');
    const requested = bytesToMiB(memoryBytes);
    const guaranteed = opts.guaranteedBytes === undefined ? undefined : bytesToMiB(opts.guaranteedBytes);
    const before = vm.dom;
    const nextRunMatch = vm.persistent && vm.inactiveMemoryKiB === before.memoryKiB;
    const plan = planMemory(
      before.memory,
      before.dimms.filter(hasAlias).map((d) => ({
        alias: d.alias,
        size: d.size,
        state: this.deviceState(vm, d.alias),
        hotplugged: this.isHotplugged(vm, d.alias),
      })),
      memoryBytes,
      this.opts.dimmAlignmentMiB,
    );
    op('planned', {
      current: before.memory,
      requested,
      plan: plan.kind,
      ...(plan.kind === 'decrease' ? { unplug: plan.unplug } : {}),
    });
    const unplugged: { alias: string; size: number }[] = [];
    const failed: { alias: string; reason: string }[] = [];
    const nodeDeltas = new Map<number, number>();

    if (plan.kind === 'decrease') {
      if (plan.unplug.length === 0) {
        throw new VirtError(
          'hotunplug',
          'no-suitable-device',
          `no hot-plugged DIMM (or set of them) fits a decrease of ${plan.decrement} MiB`,
          { decrement: plan.decrement },
        );
      }
      for (const pick of plan.unplug) {
        const cur = this.vms.get(uuid);
        const dimm = cur?.dom.dimms.find((d): d is ParsedDimm & { alias: string } => d.alias === pick.alias);
        if (!cur || !dimm) {
          failed.push({ alias: pick.alias, reason: cur ? 'device-not-found' : 'vm-gone' });
          continue;
        }
        try {
          await this.unplugOne(cur, dimm, {
            guaranteed: undefined,
            timeoutMs: opts.timeoutMs ?? this.opts.unplugTimeoutMs,
            nextRun: false,
            op: (step, extra) => op(step, { alias: pick.alias, ...extra }),
          });
          unplugged.push(pick);
          nodeDeltas.set(dimm.node, (nodeDeltas.get(dimm.node) ?? 0) - dimm.sizeKiB);
        } catch (err) {
          if (!(err instanceof VirtError)) throw err;
          failed.push({ alias: pick.alias, reason: err.reason });
        }
      }
    } else if (plan.kind === 'increase') {
      const node = before.numaCells[0]?.id ?? 0;
      if (guaranteed !== undefined) this.checkGuaranteed(guaranteed, requested, 'guaranteed');
      await this.plugOne(uuid, { size: plan.plugSize, node }, undefined, op, false);
      nodeDeltas.set(node, plan.plugSize * 1024);
    }

    vm = this.require(uuid);
    const memSize = vm.dom.memory;
    const g = Math.min(guaranteed ?? vm.meta.guaranteedMiB ?? memSize, memSize);
    if (vm.active && g !== vm.meta.guaranteedMiB) {
      vm.meta.guaranteedMiB = g;
      await this.persistMeta(vm).catch((err: unknown) => op('metadata update failed', libvirtDetails(err)));
    }

    // Next run gets the request itself (unrounded), unless the unplugs all failed.
    const changed = plan.kind !== 'decrease' || unplugged.length > 0;
    let nextRun: SetMemoryResult['nextRun'];
    if (nextRunMatch && changed) {
      const nextG = Math.min(guaranteed ?? vm.nextRunGuaranteed ?? requested, requested);
      await this.updateNextRun(vm, requested * 1024, nodeDeltas, nextG, op);
      nextRun = { updated: true, memory: requested, guaranteed: nextG };
    } else if (vm.persistent && vm.inactiveMemoryKiB !== null) {
      const m = kibToMiB(vm.inactiveMemoryKiB);
      nextRun = { updated: false, memory: m, guaranteed: Math.min(vm.nextRunGuaranteed ?? m, m) };
    } else {
      nextRun = { updated: false, memory: memSize, guaranteed: g };
    }
    this.publish(vm);
    const result = { memSize, memGuaranteedSize: vm.stats.memGuaranteedSize, unplugged, failed, nextRun };
    op('done', { ...result });
    return result;
  }

  /** Rewrites the next-run definition's memory (and guaranteed when given). Failures are logged, not thrown: the live change stands. */
  private async updateNextRun(
    vm: VmRecord,
    totalKiB: number,
    nodeDeltasKiB: ReadonlyMap<number, number>,
    guaranteed: number | null,
    op: OpLog,
  ): Promise<void> {
    try {
      const xml = await this.client.getXMLDesc(vm.ref, DomainXmlFlags.INACTIVE | DomainXmlFlags.SECURE);
      await this.client.defineXML(editInactiveMemory(xml, { totalKiB, nodeDeltasKiB }));
      vm.inactiveMemoryKiB = totalKiB;
      const nextMiB = kibToMiB(totalKiB);
      const g =
        guaranteed ?? (vm.nextRunGuaranteed !== null ? Math.min(vm.nextRunGuaranteed, nextMiB) : null);
      if (g !== null && g !== vm.nextRunGuaranteed) {
        const md = emptyMetadata();
        md.guaranteedMiB = g;
        await this.client.setMetadata(
          vm.ref,
          MetadataType.ELEMENT,
          buildMetadata(md),
          METADATA_PREFIX,
          METADATA_URI,
          DomainAffect.CONFIG,
        );
        vm.nextRunGuaranteed = g;
      }
      op('next-run configuration updated', { nextRunMemoryKiB: totalKiB, nextRunGuaranteed: g });
    } catch (err) {
      op('next-run configuration update failed', libvirtDetails(err));
    }
  }

  // ---- validation ----

  private require(vmId: string): VmRecord {
    const vm = this.vms.get(vmId.toLowerCase());
    if (!vm) throw new VirtError('no-such-vm', 'no-such-vm', `no VM with id ${vmId}`, { vmId });
    return vm;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the VM manager is shutting down');
  }

  private checkRunning(vm: VmRecord, kind: 'hotplug' | 'hotunplug'): void {
    if (vm.status === 'Migration Source') {
      throw new VirtError('migrating', 'migrating', `VM ${vm.uuid} is migrating`, { vmId: vm.uuid });
    }
    if (vm.status !== 'Up') {
      throw new VirtError(kind, 'not-running', `VM ${vm.uuid} is not running (${vm.status})`, {
        vmId: vm.uuid,
        status: vm.status,
      });
    }
  }

  private checkGuaranteed(g: number, memory: number, field: string): void {
    if (!Number.isSafeInteger(g) || g < 0)
      throw invalid(field, 'non-negative integer (MiB)', `${field} must be >= 0`);
    if (g > memory) {
      throw invalid(
        field,
        `<= ${memory} (memory after the change)`,
        `${field} ${g} MiB exceeds the VM's memory of ${memory} MiB`,
      );
    }
  }

  /** Validates an unplug request against the cached live state; returns the DIMM. */
  private checkUnplug(vm: VmRecord, mem: HotunplugSpec): ParsedDimm & { alias: string } {
    this.checkRunning(vm, 'hotunplug');
    if (typeof mem.alias !== 'string' || !isValidDimmAlias(mem.alias)) {
      throw invalid(
        'memory.alias',
        'matches ^ua-[A-Za-z0-9-]+$ or ^dimm[0-9]+$',
        'alias is not a DIMM alias',
      );
    }
    const dimm = vm.dom.dimms.find((d): d is ParsedDimm & { alias: string } => d.alias === mem.alias);
    if (!dimm) {
      throw new VirtError('hotunplug', 'device-not-found', `VM ${vm.uuid} has no DIMM ${mem.alias}`, {
        alias: mem.alias,
      });
    }
    if (mem.size !== dimm.size) {
      throw invalid(
        'memory.size',
        `equals the DIMM's size (${dimm.size})`,
        `DIMM ${dimm.alias} is ${dimm.size} MiB`,
      );
    }
    if (mem.node !== dimm.node) {
      throw invalid(
        'memory.node',
        `equals the DIMM's node (${dimm.node})`,
        `DIMM ${dimm.alias} is on node ${dimm.node}`,
      );
    }
    if (mem.address?.slot !== undefined && mem.address.slot !== dimm.slot) {
      throw invalid(
        'memory.address.slot',
        `equals the DIMM's slot (${dimm.slot})`,
        'address slot does not match',
      );
    }
    if (mem.address?.base !== undefined && mem.address.base.toLowerCase() !== dimm.base?.toLowerCase()) {
      throw invalid(
        'memory.address.base',
        `equals the DIMM's base (${dimm.base})`,
        'address base does not match',
      );
    }
    if (!this.isHotplugged(vm, dimm.alias)) {
      throw new VirtError(
        'hotunplug',
        'not-hotplugged',
        `DIMM ${dimm.alias} was present when the VM started; only hot-plugged DIMMs can be removed`,
        { alias: dimm.alias },
      );
    }
    if (this.deviceState(vm, dimm.alias) === 'unplugging') {
      throw new VirtError(
        'hotunplug',
        'already-unplugging',
        `DIMM ${dimm.alias} is already being unplugged`,
        {
          alias: dimm.alias,
        },
      );
    }
    return dimm;
  }

  private isHotplugged(vm: VmRecord, alias: string): boolean {
    return !(vm.meta.bootDimms ?? []).includes(alias);
  }

  private deviceState(vm: VmRecord, alias: string): DeviceState {
    return vm.inFlight.has(alias) || vm.meta.unplugging.some((u) => u.alias === alias)
      ? 'unplugging'
      : 'plugged';
  }

  // ---- registry: loading, events, recovery ----

  private subscribe(): void {
    const l = this.clientListeners;
    l.lifecycle = (ev) => {
      if (this.manages(ev.domain)) this.onLifecycle(ev.domain, ev.event);
    };
    l.deviceRemoved = (ev) => {
      if (!this.manages(ev.domain)) return;
      const uuid = ev.domain.uuid.toLowerCase();
      // The refresh finishes the bookkeeping when nobody waits (late removal);
      // a waiting unplug reuses it rather than reading the XML a second time.
      const refreshed = this.refresh(ev.domain);
      this.waiters.settle(uuid, dimmAliasOf(ev.alias), { kind: 'removed', refreshed });
      this.background(refreshed, 'refresh after device-removed', uuid);
    };
    l.deviceRemovalFailed = (ev) => {
      if (!this.manages(ev.domain)) return;
      const uuid = ev.domain.uuid.toLowerCase();
      const alias = dimmAliasOf(ev.alias);
      if (this.waiters.settle(uuid, alias, { kind: 'rejected' })) return;
      this.background(
        this.sync.run(uuid, () => this.lateRemovalFailed(uuid, alias)),
        'late device-removal-failed',
        uuid,
      );
    };
    l.deviceAdded = (ev) => {
      if (this.manages(ev.domain)) {
        this.background(this.refresh(ev.domain), 'refresh after device-added', ev.domain.uuid);
      }
    };
    l.disconnected = (err) =>
      this.log.warn({ err: err.message }, 'libvirt connection lost; waiting for reconnect');
    l.reconnected = () => this.background(this.resync('reconnect'), 'resync after reconnect');
    for (const [k, fn] of Object.entries(l)) {
      this.client.on(k as keyof LibvirtClientEvents, fn as () => void);
    }
  }

  private unsubscribe(): void {
    for (const [k, fn] of Object.entries(this.clientListeners)) {
      this.client.off(k as keyof LibvirtClientEvents, fn as () => void);
    }
  }

  private background(p: Promise<unknown>, what: string, vmId?: string): void {
    p.catch((err: unknown) => this.log.error({ vmId, ...libvirtDetails(err) }, `${what} failed`));
  }

  private onLifecycle(ref: DomainRef, event: number): void {
    const uuid = ref.uuid.toLowerCase();
    this.log.debug({ vmId: uuid, event }, 'lifecycle event');
    if (event === LifecycleEvent.STOPPED) {
      // Unplugs in flight fail at once, not at their timeout.
      this.waiters.settleVm(uuid, { kind: 'vm-gone' });
    }
    const how =
      event === LifecycleEvent.STARTED
        ? { boot: true }
        : event === LifecycleEvent.DEFINED
          ? { inactive: true, persistent: true }
          : event === LifecycleEvent.UNDEFINED
            ? { persistent: false }
            : {};
    this.background(this.refresh(ref, how), 'refresh after lifecycle event', uuid);
  }

  /** Re-lists domains and reloads each (start and after a reconnect). */
  private async resync(why: 'start' | 'reconnect'): Promise<void> {
    const t0 = performance.now();
    const [listed, persistent] = await Promise.all([
      this.client.listAllDomains(0),
      this.client.listAllDomains(ListDomainsFlags.PERSISTENT),
    ]);
    const all = listed.filter((d) => this.manages(d));
    const persistentSet = new Set(persistent.map((d) => d.uuid.toLowerCase()));
    const seen = new Set(all.map((d) => d.uuid.toLowerCase()));
    for (const uuid of [...this.vms.keys()]) {
      if (!seen.has(uuid))
        this.background(
          this.sync.run(uuid, async () => this.drop(uuid)),
          'drop',
          uuid,
        );
    }
    await mapLimit(all, this.opts.loadConcurrency ?? 16, async (ref) => {
      try {
        await this.refresh(ref, { persistent: persistentSet.has(ref.uuid.toLowerCase()), inactive: true });
      } catch (err) {
        this.log.error({ vmId: ref.uuid, ...libvirtDetails(err) }, 'cannot load domain');
      }
    });
    this.log.info(
      { why, vms: this.vms.size, durationMs: Math.round(performance.now() - t0) },
      'VM registry synced',
    );
  }

  /** Re-reads a domain's state and XML in its sync worker; undefined when it is gone. */
  private refresh(
    ref: DomainRef,
    how: { boot?: boolean; inactive?: boolean; persistent?: boolean } = {},
  ): Promise<VmRecord | undefined> {
    const uuid = ref.uuid.toLowerCase();
    return this.sync.run(uuid, () => this.load({ ...ref, uuid }, how));
  }

  private async load(
    ref: DomainRef,
    how: { boot?: boolean; inactive?: boolean; persistent?: boolean },
  ): Promise<VmRecord | undefined> {
    const uuid = ref.uuid;
    let state: DomainStateInfo;
    let xml: string;
    try {
      [state, xml] = await Promise.all([this.client.getState(ref), this.client.getXMLDesc(ref, 0)]);
    } catch (err) {
      if (isNoDomain(err)) {
        this.drop(uuid);
        return undefined;
      }
      throw err;
    }
    const dom = parseDomainXml(xml);
    const active = isActive(state);
    let vm = this.vms.get(uuid);
    const firstSight = !vm;
    const persistent =
      how.persistent ??
      vm?.persistent ??
      (await this.client.listAllDomains(ListDomainsFlags.PERSISTENT)).some(
        (d) => d.uuid.toLowerCase() === uuid,
      );
    if (!vm) {
      vm = {
        uuid,
        ref,
        state,
        status: statusOf(state),
        active,
        persistent,
        dom,
        inactiveMemoryKiB: null,
        nextRunGuaranteed: null,
        meta: emptyMetadata(),
        metaBootId: null,
        inFlight: new Set(),
        stats: undefined as unknown as VmStats,
        metaWrite: Promise.resolve(),
      };
    }
    const wasActive = vm.active && !firstSight;
    // A live ref carries the runtime id; keep it for calls.
    vm.ref = { name: dom.name, uuid, id: active ? (ref.id >= 0 ? ref.id : vm.ref.id) : -1 };
    vm.state = state;
    vm.status = statusOf(state);
    vm.active = active;
    vm.persistent = persistent;
    vm.dom = dom;

    if (persistent && (how.inactive || firstSight || vm.inactiveMemoryKiB === null)) {
      const inactive = active
        ? parseDomainXml(await this.client.getXMLDesc(ref, DomainXmlFlags.INACTIVE))
        : dom;
      vm.inactiveMemoryKiB = inactive.memoryKiB;
      vm.nextRunGuaranteed = inactive.metadata?.guaranteedMiB ?? null;
    } else if (!persistent) {
      vm.inactiveMemoryKiB = null;
      vm.nextRunGuaranteed = null;
    }
    this.vms.set(uuid, vm);

    const late: { alias: string; memSize: number }[] = [];
    if (!active) {
      this.waiters.settleVm(uuid, { kind: 'vm-gone' });
      vm.meta = emptyMetadata();
      vm.metaBootId = null;
      if (!persistent) {
        this.drop(uuid);
        return undefined;
      }
    } else if (how.boot || !wasActive || vm.metaBootId !== vm.ref.id) {
      await this.adoptMetadata(vm, how.boot === true);
    } else {
      late.push(...(await this.reconcileUnplugs(vm)));
    }
    this.publish(vm);
    for (const l of late) this.emit('deviceRemoved', uuid, { ...l, late: true });
    return vm;
  }

  /** Takes the live metadata for a boot we did not know yet, recording what we must. */
  private async adoptMetadata(vm: VmRecord, boot: boolean): Promise<void> {
    const dom = vm.dom;
    const aliases = dom.dimms.map((d) => d.alias).filter((a): a is string => a !== null);
    const md = dom.metadata ? structuredClone(dom.metadata) : emptyMetadata();
    let write = false;
    if (boot) {
      // Everything present at start was onlined by the guest at boot.
      md.bootDimms = aliases;
      md.unplugging = [];
      write = true;
      this.log.info({ vmId: vm.uuid, bootDimms: aliases }, 'VM started: recorded boot-time DIMMs');
    } else if (md.bootDimms === null) {
      // First seen running without our metadata: DIMMs with our user alias
      // (ua-…) were plugged by an engine; libvirt-named ones (dimmN) and any
      // in the persistent definition are taken as boot-time.
      const defined = vm.persistent ? await this.definedDimmAliases(vm) : new Set<string>();
      md.bootDimms = aliases.filter((a) => !isUserAlias(a) || defined.has(a));
      write = true;
      this.log.warn(
        {
          vmId: vm.uuid,
          assumedBootDimms: md.bootDimms,
          assumedHotplugged: aliases.filter((a) => !md.bootDimms?.includes(a)),
        },
        'VM first seen running without vmhostd metadata: assumed ua-* DIMMs not in the definition were hot-plugged, the others present at boot',
      );
    }
    if (md.guaranteedMiB === null) {
      md.guaranteedMiB = Math.min(vm.nextRunGuaranteed ?? dom.memory, dom.memory);
      write = true;
    }
    vm.meta = md;
    vm.metaBootId = vm.ref.id;
    // Unplugs that completed while we were away.
    const late = boot ? [] : await this.reconcileUnplugs(vm, false);
    if (write || late.length) {
      await this.persistMeta(vm).catch((err: unknown) =>
        this.log.error({ vmId: vm.uuid, ...libvirtDetails(err) }, 'cannot write vmhostd metadata'),
      );
    }
    this.publish(vm);
    for (const l of late) this.emit('deviceRemoved', vm.uuid, { ...l, late: true });
  }

  private async definedDimmAliases(vm: VmRecord): Promise<Set<string>> {
    try {
      const inactive = parseDomainXml(await this.client.getXMLDesc(vm.ref, DomainXmlFlags.INACTIVE));
      return new Set(inactive.dimms.map((d) => d.alias).filter((a): a is string => a !== null));
    } catch {
      return new Set();
    }
  }

  /**
   * Marks of DIMMs no longer in the live XML: the waiting operation gets its
   * answer; without one, the removal completed late and we finish it here.
   */
  private async reconcileUnplugs(
    vm: VmRecord,
    persist = true,
  ): Promise<{ alias: string; memSize: number }[]> {
    const present = new Set(vm.dom.dimms.map((d) => d.alias));
    const late: { alias: string; memSize: number }[] = [];
    for (const mark of [...vm.meta.unplugging]) {
      if (present.has(mark.alias)) continue;
      if (this.waiters.settle(vm.uuid, mark.alias, { kind: 'removed' }) || vm.inFlight.has(mark.alias))
        continue;
      vm.meta.unplugging = vm.meta.unplugging.filter((u) => u.alias !== mark.alias);
      late.push({ alias: mark.alias, memSize: vm.dom.memory });
      this.log.info({ vmId: vm.uuid, alias: mark.alias, since: mark.since }, 'late removal completed');
    }
    if (late.length) {
      if (vm.meta.guaranteedMiB !== null)
        vm.meta.guaranteedMiB = Math.min(vm.meta.guaranteedMiB, vm.dom.memory);
      if (persist) {
        await this.persistMeta(vm).catch((err: unknown) =>
          this.log.error({ vmId: vm.uuid, ...libvirtDetails(err) }, 'cannot write vmhostd metadata'),
        );
      }
    }
    return late;
  }

  private async lateRemovalFailed(uuid: string, alias: string): Promise<void> {
    const vm = this.vms.get(uuid);
    if (!vm || vm.inFlight.has(alias) || !vm.meta.unplugging.some((u) => u.alias === alias)) return;
    vm.meta.unplugging = vm.meta.unplugging.filter((u) => u.alias !== alias);
    this.log.info({ vmId: uuid, alias }, 'late removal failed: guest rejected');
    await this.persistMeta(vm).catch((err: unknown) =>
      this.log.error({ vmId: uuid, ...libvirtDetails(err) }, 'cannot write vmhostd metadata'),
    );
    this.publish(vm);
    this.emit('deviceRemovalFailed', uuid, { alias, reason: 'guest-rejected' });
  }

  private drop(uuid: string): void {
    this.waiters.settleVm(uuid, { kind: 'vm-gone' });
    const vm = this.vms.get(uuid);
    if (!vm) return;
    this.vms.delete(uuid);
    vm.state = DOWN_STATE;
    vm.status = 'Down';
    vm.active = false;
    this.log.info({ vmId: uuid, vmName: vm.dom.name }, 'VM gone');
    this.emit('vmStatus', this.buildStats(vm, []));
  }

  /** Writes our metadata; writes of one VM are chained and each sends the latest state. */
  private persistMeta(vm: VmRecord): Promise<void> {
    const write = async (): Promise<void> => {
      if (!vm.active) return;
      await this.client.setMetadata(
        vm.ref,
        MetadataType.ELEMENT,
        buildMetadata(vm.meta),
        METADATA_PREFIX,
        METADATA_URI,
        DomainAffect.LIVE,
      );
    };
    const p = vm.metaWrite.then(write, write);
    vm.metaWrite = p.catch(() => undefined);
    return p;
  }

  // ---- stats ----

  /** Rebuilds the cached stats and notifies when anything visible changed. */
  private publish(vm: VmRecord): void {
    const devices: VmStatsDevice[] = vm.active
      ? vm.dom.dimms
          .filter(hasAlias)
          .map((d) => ({
            alias: d.alias,
            size: d.size,
            node: d.node,
            slot: d.slot ?? -1,
            base: d.base ?? '',
            state: this.deviceState(vm, d.alias),
          }))
          .sort((a, b) => a.slot - b.slot)
      : [];
    const prev = vm.stats as VmStats | undefined;
    const next = this.buildStats(vm, devices);
    vm.stats = next;
    if (
      !prev ||
      prev.hash !== next.hash ||
      prev.status !== next.status ||
      prev.memGuaranteedSize !== next.memGuaranteedSize ||
      prev.vmName !== next.vmName ||
      prev.balloonActive !== next.balloonActive
    ) {
      if (this.vms.get(vm.uuid) === vm) this.emit('vmStatus', next);
    }
  }

  private buildStats(vm: VmRecord, devices: VmStatsDevice[]): VmStats {
    const memSize = vm.dom.memory;
    const g = vm.active ? (vm.meta.guaranteedMiB ?? memSize) : (vm.nextRunGuaranteed ?? memSize);
    return Object.freeze({
      vmId: vm.uuid,
      vmName: vm.dom.name,
      status: vm.status,
      memSize,
      memGuaranteedSize: Math.min(g, memSize),
      hash: devicesHash(memSize, devices),
      balloonActive: vm.dom.balloonActive,
      memoryDevices: devices,
    });
  }

  private opLog(operation: string, vmId: string, opId: string | undefined, alias?: string): OpLog {
    const t0 = performance.now();
    const log = this.log.child({ operation, vmId, opId: opId ?? newOpId(), ...(alias ? { alias } : {}) });
    return (step, extra) => {
      const fields = { step, durationMs: Math.round((performance.now() - t0) * 10) / 10, ...extra };
      if (step.startsWith('warning')) log.warn(fields, step);
      else if (/failed|timed out/.test(step)) log.warn(fields, step);
      else log.info(fields, step);
    };
  }
}

/** Device events may name a DIMM by its memory backend id (mem<alias>); we key by the device alias. */
function dimmAliasOf(eventAlias: string): string {
  return /^mem(ua-|dimm\d)/.test(eventAlias) ? eventAlias.slice(3) : eventAlias;
}

function hasAlias(d: ParsedDimm): d is ParsedDimm & { alias: string } {
  return d.alias !== null;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
