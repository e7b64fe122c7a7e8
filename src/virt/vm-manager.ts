// The daemon's entry to the domain layer: the VM registry (vm-registry.ts)
// and the memory operations on it (hotplug.ts, hotunplug.ts, set-memory.ts).
// Operations on one VM run one after the other on its worker (vm-worker.ts),
// after the checks that can be answered at once.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { LibvirtApi } from '../libvirt/types.js';
import { checkUnplug } from './checks.js';
import { invalid, VirtError } from './errors.js';
import {
  DEFAULT_GUEST_PROBE,
  type GuestProbeOptions,
  GuestProber,
  holdsKernelMemory,
  notMovable,
} from './guest-probe.js';
import { plugOne } from './hotplug.js';
import { unplugOne } from './hotunplug.js';
import { checkNotMigrating } from './migration-check.js';
import { freshInStep, resizeNextRun } from './next-run.js';
import { guardedObserver, type OperationObserver, observeOperation } from './observer.js';
import { createOpLog, type OpContext, type OpLog } from './op-context.js';
import { checkResize, type OnResizeFailure, type ResizeCallResult, resizeOne } from './resize-memory.js';
import { setMemoryNow } from './set-memory.js';
import type {
  HotplugSpec,
  HotunplugSpec,
  SetMemoryResult,
  UnplugResult,
  VmListEntry,
  VmManagerEvents,
  VmStats,
} from './types.js';
import { VmRegistry } from './vm-registry.js';

export type { HotplugSpec, HotunplugSpec } from './types.js';

export interface VmManagerOptions {
  log: Logger;
  /** Default wait for a guest to release a DIMM. */
  unplugTimeoutMs: number;
  /** DIMM size granularity (MiB) for hot plug and setMemory increases. */
  dimmAlignmentMiB: number;
  /** Default wait of a virtio-mem resize (default 120 s). */
  resizeTimeoutMs?: number;
  /** A resize whose device has not moved for this long is stalled (default 20 s). */
  resizeStallMs?: number;
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
  /** Told of every call and every DIMM's outcome with durations (the daemon's metrics). */
  observer?: OperationObserver;
  /**
   * Asking guest agents which zone holds each DIMM (guest-probe.ts); defaults
   * in DEFAULT_GUEST_PROBE. false: never asked (every DIMM unknown).
   */
  guestProbe?: Partial<GuestProbeOptions> | false;
}

/** Options of VM.setMemory, as the manager takes them. */
export interface SetMemoryOptions {
  guaranteedBytes?: number;
  timeoutMs?: number;
  opId?: string;
  /** Plan only: answer what would be done, change nothing. */
  dryRun?: boolean;
  /** Plan without asking the guest which DIMMs it can give back. */
  force?: boolean;
}

export class VmManager extends EventEmitter<VmManagerEvents> {
  private readonly registry: VmRegistry;
  private readonly ctx: OpContext;
  private readonly log: Logger;
  private closed = false;

  private constructor(
    client: LibvirtApi,
    private readonly opts: VmManagerOptions,
  ) {
    super();
    this.log = opts.log;
    const guest =
      opts.guestProbe === false
        ? undefined
        : new GuestProber(client, { ...DEFAULT_GUEST_PROBE, ...opts.guestProbe });
    this.registry = new VmRegistry(client, this, { ...opts, ...(guest ? { guest } : {}) });
    this.ctx = { client, opts, observer: guardedObserver(opts.observer, opts.log) };
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
    this.registry.subscribe();
    try {
      await this.registry.resync('start');
    } catch (err) {
      this.registry.unsubscribe();
      throw err;
    }
    return this;
  }

  // ---- queries (from cache, no libvirt call) ----

  list(): VmListEntry[] {
    return this.registry.all().map((vm) => ({ vmId: vm.uuid, vmName: vm.dom.name, status: vm.status }));
  }

  stats(vmId: string): VmStats {
    return this.registry.require(vmId).stats;
  }

  allStats(): VmStats[] {
    return this.registry.all().map((vm) => vm.stats);
  }

  // ---- operations (each observed: started, then its outcome) ----

  async hotplugMemory(
    vmId: string,
    mem: HotplugSpec,
    opts: { memGuaranteedSize?: number; opId?: string } = {},
  ): Promise<VmStats> {
    const info = {
      operation: 'hotplug' as const,
      vmId: vmId.toLowerCase(),
      ...(mem.alias ? { alias: mem.alias } : {}),
    };
    return observeOperation(this.ctx.observer, info, () => this.plugCall(vmId, mem, opts));
  }

  async hotunplugMemory(
    vmId: string,
    mem: HotunplugSpec,
    opts: { memGuaranteedSize?: number; timeoutMs?: number; opId?: string; force?: boolean } = {},
  ): Promise<UnplugResult> {
    const info = { operation: 'hotunplug' as const, vmId: vmId.toLowerCase(), alias: mem.alias };
    return observeOperation(this.ctx.observer, info, () => this.unplugCall(vmId, mem, opts));
  }

  async setMemory(vmId: string, memoryBytes: number, opts: SetMemoryOptions = {}): Promise<SetMemoryResult> {
    // A dry run changes nothing: not an operation for the observer (metrics).
    if (opts.dryRun) return this.setMemoryCall(vmId, memoryBytes, opts);
    const info = { operation: 'setMemory' as const, vmId: vmId.toLowerCase() };
    return observeOperation(
      this.ctx.observer,
      info,
      () => this.setMemoryCall(vmId, memoryBytes, opts),
      (r) => (r.failed.length > 0 ? 'partial' : 'ok'),
    );
  }

  private async plugCall(
    vmId: string,
    mem: HotplugSpec,
    opts: { memGuaranteedSize?: number; opId?: string } = {},
  ): Promise<VmStats> {
    const uuid = vmId.toLowerCase();
    const op = this.opLog('hotplug', uuid, opts.opId, mem.alias);
    const w = this.registry.requireWorker(uuid);
    this.checkOpen();
    return w.operate(async () => {
      op('started', { size: mem.size, node: mem.node });
      const vm = await plugOne(this.ctx, w, mem, opts.memGuaranteedSize, op, true);
      op('done', { memSize: vm.stats.memSize });
      return vm.stats;
    });
  }

  private async unplugCall(
    vmId: string,
    mem: HotunplugSpec,
    opts: { memGuaranteedSize?: number; timeoutMs?: number; opId?: string; force?: boolean } = {},
  ): Promise<UnplugResult> {
    const uuid = vmId.toLowerCase();
    const op = this.opLog('hotunplug', uuid, opts.opId, mem.alias);
    // Answer what we can at once, not behind other operations on the VM.
    const w = this.registry.requireWorker(uuid);
    checkUnplug(w.require(), mem);
    this.checkOpen();
    return w.operate(async () => {
      op('started', {
        size: mem.size,
        node: mem.node,
        timeoutMs: opts.timeoutMs ?? this.opts.unplugTimeoutMs,
      });
      const first = checkUnplug(w.require(), mem);
      // Both pre-flights only read, so they go out together: one round trip
      // of the unplug's latency, not two. The guest's answer is fresh, not
      // the cache: the decision refuses before anything is touched.
      const [, view] = await Promise.all([
        checkNotMigrating(this.ctx.client, w.require(), op),
        opts.force ? undefined : w.probeGuest([first.alias], op).then((v) => v.get(first.alias)),
      ]);
      op('pre-flight done');
      if (view) op('guest probed', { zone: view.zone, online: view.online });
      if (view && holdsKernelMemory(view)) throw notMovable(first.alias, view);
      const dimm = checkUnplug(w.require(), mem);
      let r: Awaited<ReturnType<typeof unplugOne>>;
      try {
        r = await unplugOne(this.ctx, w, dimm, {
          guaranteed: opts.memGuaranteedSize,
          timeoutMs: opts.timeoutMs ?? this.opts.unplugTimeoutMs,
          nextRun: true,
          op,
        });
      } catch (err) {
        // A refused or timed-out unplug may have left the guest's blocks otherwise than they were.
        w.reprobeGuest();
        throw err;
      }
      return {
        status: 'removed',
        alias: dimm.alias,
        memSize: r.memSize,
        memGuaranteedSize: r.memGuaranteedSize,
      };
    });
  }

  /** Resizes one virtio-mem device and waits for the guest (resize-memory.ts). */
  async resizeMemoryDevice(
    vmId: string,
    alias: string,
    requested: number,
    opts: { timeoutMs?: number; onFailure?: OnResizeFailure; opId?: string } = {},
  ): Promise<ResizeCallResult> {
    const info = { operation: 'resize' as const, vmId: vmId.toLowerCase(), alias };
    return observeOperation(this.ctx.observer, info, () => this.resizeCall(vmId, alias, requested, opts));
  }

  private async resizeCall(
    vmId: string,
    alias: string,
    requested: number,
    opts: { timeoutMs?: number; onFailure?: OnResizeFailure; opId?: string },
  ): Promise<ResizeCallResult> {
    const uuid = vmId.toLowerCase();
    const op = this.opLog('resize', uuid, opts.opId, alias);
    // Bad input is answered at once, not behind other operations on the VM.
    const w = this.registry.requireWorker(uuid);
    checkResize(w.require(), alias, requested);
    this.checkOpen();
    return w.operate(async () => {
      // The definition follows only if it was in step before (docs/design.md, "The feature").
      const inStep = await freshInStep(w);
      try {
        const r = await resizeOne(this.ctx.client, w, alias, {
          requested,
          timeoutMs: opts.timeoutMs ?? this.opts.resizeTimeoutMs ?? 120_000,
          stallMs: this.opts.resizeStallMs ?? 20_000,
          onFailure: opts.onFailure ?? 'settle',
          op,
          report: (outcome, durationMs) =>
            this.ctx.observer.resizeFinished({ vmId: uuid, alias, outcome, durationMs }),
        });
        return { ...r, nextRun: await resizeNextRun(this.ctx.client, w, alias, inStep, op) };
      } catch (err) {
        // Stopped short: the definition follows what the device asks for now (settled or kept).
        if (err instanceof VirtError && (err.reason === 'timeout' || err.reason === 'stalled')) {
          // Unconfirmed (libvirt could not be re-read): the live requested is not known, so the definition is left.
          const follow = inStep && err.details.unconfirmed !== true;
          err.details.nextRun = await resizeNextRun(this.ctx.client, w, alias, follow, op);
        }
        throw err;
      } finally {
        // The device's last size goes out before the VM's final status.
        this.registry.sizeChanges.flush(uuid, alias);
        const vm = this.registry.get(uuid);
        if (vm) this.emit('vmStatus', vm.stats);
      }
    });
  }

  private async setMemoryCall(
    vmId: string,
    memoryBytes: number,
    opts: SetMemoryOptions = {},
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
    const w = this.registry.requireWorker(uuid);
    this.checkOpen();
    const resize = {
      timeoutMs: this.opts.resizeTimeoutMs ?? 120_000,
      stallMs: this.opts.resizeStallMs ?? 20_000,
    };
    return w.operate(async () => {
      try {
        return await setMemoryNow(this.ctx, w, memoryBytes, { ...opts, resize }, op);
      } finally {
        // The virtio-mem devices' last sizes go out with the call's end.
        for (const v of w.record?.dom.virtioMem ?? []) {
          if (v.alias) this.registry.sizeChanges.flush(uuid, v.alias);
        }
      }
    });
  }

  /** Stops taking operations and waits (bounded) for those in flight and their metadata writes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const bound = this.opts.closeTimeoutMs ?? this.opts.unplugTimeoutMs + 10_000;
    let timer: NodeJS.Timeout | undefined;
    // One deadline for both waits, cleared only once both are over.
    const timedOut = new Promise<true>((r) => {
      timer = setTimeout(() => r(true), bound);
    });
    try {
      const workers = this.registry.allWorkers();
      const drained = Promise.all(workers.map((w) => w.opsIdle())).then(() => false);
      if (await Promise.race([drained, timedOut])) {
        const pendingVms = workers.filter((w) => w.busy).length;
        this.log.warn({ pendingVms, boundMs: bound }, 'closing with operations still in flight');
      }
      // Metadata writes left behind by finished operations land before we go.
      const written = Promise.all(this.registry.allWorkers().map((w) => w.metaWrite)).then(() => false);
      if (await Promise.race([written, timedOut])) {
        this.log.warn({ boundMs: bound }, 'closing with metadata writes still in flight');
      }
    } finally {
      clearTimeout(timer);
      this.registry.unsubscribe();
    }
  }

  private checkOpen(): void {
    if (this.closed) {
      throw new VirtError('shutting-down', 'shutting-down', 'the VM manager is shutting down');
    }
  }

  private opLog(operation: string, vmId: string, opId: string | undefined, alias?: string): OpLog {
    return createOpLog(this.log, operation, vmId, opId, alias);
  }
}
