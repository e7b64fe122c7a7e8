// "Set memory to X" (docs/design.md, "The feature" and "Operations"): the
// planner's unplugs or one hot plug, then guaranteed memory and the next-run
// definition. A target below what can never be removed (base memory and DIMMs
// present at boot) is refused as below-minimum, naming that floor: a typo
// (1.5MiB for 1.5GiB) must not unplug every DIMM. A dry run plans, applies the
// same refusals, and answers without changing anything.

import { checkGuaranteed, checkRunning } from './checks.js';
import { kibToMiB, type ParsedDimm } from './domain-xml.js';
import { VirtError } from './errors.js';
import type { GuestViews } from './guest-probe.js';
import { plugOne } from './hotplug.js';
import { unplugOne } from './hotunplug.js';
import { libvirtDetails } from './libvirt-errors.js';
import { checkNotMigrating } from './migration-check.js';
import { freshInStep, nextBootKiB, nextRunInStep, updateNextRun } from './next-run.js';
import type { OpContext, OpLog } from './op-context.js';
import { bytesToMiB, type MemoryPlan, planMemory } from './planner.js';
import type { ResizeTarget } from './resize-memory.js';
import { hasVirtioMem, resizeVirtioMemTo } from './set-memory-virtio.js';
import type { SetMemoryResult } from './types.js';
import { isLiveVirtioMem } from './virtio-mem.js';
import { planVirtioMem } from './virtio-mem-plan.js';
import { deviceState, hasAlias, isHotplugged, type VmRecord } from './vm-record.js';
import type { VmWorker } from './vm-worker.js';

interface Request {
  requested: number;
  guaranteed: number | undefined;
  timeoutMs: number;
}

interface Changes {
  unplugged: { alias: string; size: number }[];
  resized: SetMemoryResult['resized'];
  failed: { alias: string; reason: string }[];
  /** KiB added (positive) or removed (negative) per NUMA node. */
  nodeDeltas: Map<number, number>;
  /** Whether the live memory changed at all. */
  changed: boolean;
}

/** Runs as one of the VM's operations; the request's numbers are already validated. */
export async function setMemoryNow(
  ctx: OpContext,
  w: VmWorker,
  memoryBytes: number,
  opts: {
    guaranteedBytes?: number;
    timeoutMs?: number;
    /** Default waits of a virtio-mem resize. */
    resize?: { timeoutMs: number; stallMs: number };
    /** Plan only: answer what would be done, change nothing. */
    dryRun?: boolean;
    /** Plan without asking the guest which DIMMs it can give back. */
    force?: boolean;
  },
  op: OpLog,
): Promise<SetMemoryResult> {
  checkRunning(w.require(), 'hotunplug');
  await checkNotMigrating(ctx.client, w.require(), op);
  const before = w.require();
  checkRunning(before, 'hotunplug');
  const req: Request = {
    requested: bytesToMiB(memoryBytes),
    guaranteed: opts.guaranteedBytes === undefined ? undefined : bytesToMiB(opts.guaranteedBytes),
    timeoutMs: opts.timeoutMs ?? ctx.opts.unplugTimeoutMs,
  };
  const nextRunMatch = hasVirtioMem(w) && !opts.dryRun ? await freshInStep(w) : nextRunInStep(before);
  const floor = floorOf(before);
  if (req.requested < floor) {
    throw new VirtError(
      'hotunplug',
      'below-minimum',
      `${req.requested} MiB is below this VM's minimum of ${floor} MiB (base memory and DIMMs present at boot cannot be removed)`,
      { floor, requested: req.requested },
    );
  }
  // virtio-mem devices reach exact sizes: DIMMs first, virtio-mem takes the remainder (virtio-mem-plan.ts).
  const target: ResizeTarget = w;
  const withVirtio = hasVirtioMem(target);
  const virtioMoves =
    withVirtio &&
    planVirtioMem(before.dom.memory, req.requested, before.dom.virtioMem.filter(isLiveVirtioMem)).length > 0;
  // A decrease asks the guest afresh which DIMMs it could give back (not the cache).
  const zones =
    req.requested < before.dom.memory && !opts.force ? await probeCandidates(w, before, op) : new Map();
  // An increase virtio-mem can make needs no DIMM (nor the DIMM alignment).
  const plan: MemoryPlan =
    virtioMoves && req.requested > before.dom.memory
      ? { kind: 'increase', requested: req.requested, plugSize: 0 }
      : planFor(ctx, before, memoryBytes, zones, opts.force === true);
  const skipped = plan.kind === 'decrease' ? plan.skipped : [];
  op('planned', {
    current: before.dom.memory,
    requested: req.requested,
    plan: plan.kind,
    ...(plan.kind === 'decrease' ? { unplug: plan.unplug } : {}),
    ...(skipped.length > 0 ? { skipped } : {}),
    ...(opts.dryRun ? { dryRun: true } : {}),
  });
  if (opts.dryRun) {
    if (plan.kind === 'decrease' && plan.unplug.length === 0 && !virtioMoves) {
      throw noSuitable(plan.decrement, withVirtio, skipped);
    }
    return dryRunResult(before, plan, req, floor, withVirtio);
  }
  const virtioStep = async (changes: Changes): Promise<Changes> => {
    const step = await resizeVirtioMemTo(ctx.client, target, req.requested, {
      timeoutMs: opts.timeoutMs ?? opts.resize?.timeoutMs ?? ctx.opts.unplugTimeoutMs,
      stallMs: opts.resize?.stallMs ?? 20_000,
      op,
      report: (alias, outcome, durationMs) =>
        ctx.observer.resizeFinished({ vmId: w.uuid, alias, outcome, durationMs }),
    });
    changes.resized.push(...step.resized);
    changes.failed.push(...step.failed);
    if (step.resized.length > 0) changes.changed = true;
    return changes;
  };
  const none = (): Changes => ({
    unplugged: [],
    resized: [],
    failed: [],
    nodeDeltas: new Map(),
    changed: false,
  });
  let changes: Changes;
  if (withVirtio && plan.kind === 'decrease') {
    if (plan.unplug.length === 0 && !virtioMoves) throw noSuitable(plan.decrement, true, skipped);
    changes = await virtioStep(plan.unplug.length > 0 ? await unplugPlanned(ctx, w, plan, req, op) : none());
  } else if (withVirtio && plan.kind === 'increase' && plan.plugSize === 0) {
    if (req.guaranteed !== undefined) checkGuaranteed(req.guaranteed, req.requested, 'guaranteed');
    changes = await virtioStep(none());
  } else {
    changes =
      plan.kind === 'decrease'
        ? await unplugPlanned(ctx, w, plan, req, op)
        : plan.kind === 'increase'
          ? await plugIncrease(ctx, w, before, plan.plugSize, req, op)
          : { ...none(), changed: true };
  }

  const g = await settleGuaranteed(w, req, op);
  const nextRun = withVirtio
    ? await nextRunAfterVirtio(ctx, w, req, changes, nextRunMatch, op)
    : await nextRunAfter(ctx, w, req, changes, nextRunMatch, g, op);
  const vm = w.require();
  const { unplugged, resized, failed } = changes;
  const result = {
    memSize: vm.dom.memory,
    memGuaranteedSize: vm.stats.memGuaranteedSize,
    unplugged,
    resized,
    failed,
    skipped,
    nextRun,
  };
  op('done', { ...result });
  return result;
}

/** MiB that can never be removed: all but the hot-plugged DIMMs and what virtio-mem devices hold. */
function floorOf(vm: Readonly<VmRecord>): number {
  const dimms = vm.dom.dimms.reduce(
    (sum, d) => sum + (d.alias !== null && isHotplugged(vm, d.alias) ? d.size : 0),
    0,
  );
  const virtio = vm.dom.virtioMem.reduce((sum, v) => sum + v.current, 0);
  return vm.dom.memory - dimms - virtio;
}

/** What setMemoryNow would answer if every step succeeded; changes nothing. */
function dryRunResult(
  vm: Readonly<VmRecord>,
  plan: MemoryPlan,
  req: Request,
  floor: number,
  withVirtio: boolean,
): SetMemoryResult {
  const unplugged = plan.kind === 'decrease' ? plan.unplug.map((d) => ({ ...d })) : [];
  let memSize = vm.dom.memory - unplugged.reduce((sum, d) => sum + d.size, 0);
  if (plan.kind === 'increase' && plan.plugSize > 0) memSize += plan.plugSize;
  const resized: SetMemoryResult['resized'] = [];
  if (withVirtio) {
    const live = vm.dom.virtioMem.filter(isLiveVirtioMem);
    for (const t of planVirtioMem(memSize, req.requested, live)) {
      const dev = live.find((d) => d.alias === t.alias);
      memSize += t.requested - (dev?.current ?? t.requested);
      resized.push({ alias: t.alias, requested: t.requested, current: t.requested });
    }
  }
  const g = Math.min(req.guaranteed ?? vm.meta.guaranteedMiB ?? memSize, memSize);
  const hotDimms = vm.dom.dimms.reduce(
    (sum, d) => sum + (d.alias !== null && isHotplugged(vm, d.alias) ? d.size : 0),
    0,
  );
  return {
    memSize,
    memGuaranteedSize: g,
    unplugged,
    resized,
    failed: [],
    skipped: plan.kind === 'decrease' ? plan.skipped : [],
    nextRun: {
      updated: false,
      memory: req.requested,
      guaranteed: Math.min(req.guaranteed ?? g, req.requested),
    },
    dryRun: true,
    floor,
    hotplugged: hotDimms,
  };
}

function planFor(
  ctx: OpContext,
  vm: Readonly<VmRecord>,
  memoryBytes: number,
  zones: GuestViews,
  force: boolean,
): MemoryPlan {
  return planMemory(
    vm.dom.memory,
    vm.dom.dimms.filter(hasAlias).map((d) => {
      const zone = zones.get(d.alias)?.zone;
      return {
        alias: d.alias,
        size: d.size,
        state: deviceState(vm, d.alias) === 'unplugging' ? 'unplugging' : 'plugged',
        hotplugged: isHotplugged(vm, d.alias),
        ...(zone ? { zone } : {}),
      };
    }),
    memoryBytes,
    ctx.opts.dimmAlignmentMiB,
    { force },
  );
}

/** The guest's answer now for the DIMMs a decrease could take. */
function probeCandidates(w: VmWorker, vm: Readonly<VmRecord>, op: OpLog): Promise<GuestViews> {
  const aliases = vm.dom.dimms
    .filter(hasAlias)
    .filter((d) => isHotplugged(vm, d.alias) && deviceState(vm, d.alias) === 'plugged')
    .map((d) => d.alias);
  return aliases.length > 0 ? w.probeGuest(aliases, op) : Promise.resolve(new Map());
}

/** The planner's unplugs, one after the other; a failed one is reported, not thrown. */
async function unplugPlanned(
  ctx: OpContext,
  w: VmWorker,
  plan: MemoryPlan & { kind: 'decrease' },
  req: Request,
  op: OpLog,
): Promise<Changes> {
  if (plan.unplug.length === 0) throw noSuitable(plan.decrement, false, plan.skipped);
  const changes: Changes = { unplugged: [], resized: [], failed: [], nodeDeltas: new Map(), changed: false };
  for (const pick of plan.unplug) {
    const cur = w.record;
    const dimm = cur?.dom.dimms.find((d): d is ParsedDimm & { alias: string } => d.alias === pick.alias);
    if (!cur || !dimm) {
      changes.failed.push({ alias: pick.alias, reason: cur ? 'device-not-found' : 'vm-gone' });
      continue;
    }
    try {
      await unplugOne(ctx, w, dimm, {
        guaranteed: undefined,
        timeoutMs: req.timeoutMs,
        nextRun: false,
        op: (step, extra) => op(step, { alias: pick.alias, ...extra }),
      });
      changes.unplugged.push(pick);
      changes.changed = true;
      changes.nodeDeltas.set(dimm.node, (changes.nodeDeltas.get(dimm.node) ?? 0) - dimm.sizeKiB);
    } catch (err) {
      if (!(err instanceof VirtError)) throw err;
      changes.failed.push({ alias: pick.alias, reason: err.reason });
    }
  }
  return changes;
}

async function plugIncrease(
  ctx: OpContext,
  w: VmWorker,
  before: Readonly<VmRecord>,
  size: number,
  req: Request,
  op: OpLog,
): Promise<Changes> {
  const node = before.dom.numaCells[0]?.id ?? 0;
  if (req.guaranteed !== undefined) checkGuaranteed(req.guaranteed, req.requested, 'guaranteed');
  await plugOne(ctx, w, { size, node }, undefined, op, false);
  return {
    unplugged: [],
    resized: [],
    failed: [],
    nodeDeltas: new Map([[node, size * 1024]]),
    changed: true,
  };
}

/** Guaranteed memory as requested (or as it was), never above the memory now; returns it. */
async function settleGuaranteed(w: VmWorker, req: Request, op: OpLog): Promise<number> {
  const vm = w.require();
  const memSize = vm.dom.memory;
  const g = Math.min(req.guaranteed ?? vm.meta.guaranteedMiB ?? memSize, memSize);
  if (vm.active && g !== vm.meta.guaranteedMiB) {
    await w.setGuaranteed(g).catch((err: unknown) => op('metadata update failed', libvirtDetails(err)));
  }
  return g;
}

/** Next run gets the request itself (unrounded), unless the unplugs all failed. */
/**
 * The next-run definition of a VM with virtio-mem devices, when it was in
 * step: the DIMMs' change goes into `<memory>` (and the NUMA cells, as
 * plain memory), and each device's `<requested>` follows the live one, so
 * the next boot gets what the VM has now. Exact to the block, not to the
 * requested bytes: a device's next-boot size is its `<requested>`.
 */
async function nextRunAfterVirtio(
  ctx: OpContext,
  w: VmWorker,
  req: Request,
  changes: Changes,
  inStep: boolean,
  op: OpLog,
): Promise<SetMemoryResult['nextRun']> {
  const vm = w.require();
  const inactive = vm.inactiveMemoryKiB;
  if (inStep && changes.changed && inactive !== null) {
    let totalKiB = inactive;
    for (const d of changes.nodeDeltas.values()) totalKiB += d;
    const requestedKiB = new Map(
      vm.dom.virtioMem.flatMap((v) => (v.alias === null ? [] : [[v.alias, v.requestedKiB] as const])),
    );
    const nextMiB = kibToMiB(nextBootKiB(vm, totalKiB, requestedKiB));
    const nextG = Math.min(req.guaranteed ?? vm.nextRunGuaranteed ?? nextMiB, nextMiB);
    const r = await updateNextRun(ctx.client, vm, totalKiB, changes.nodeDeltas, nextG, op, requestedKiB);
    if (r) {
      w.nextRunUpdated(r.inactiveMemoryKiB, r.nextRunGuaranteed, r.inactiveVirtioRequestedKiB);
      return { updated: true, memory: nextMiB, guaranteed: nextG };
    }
  }
  if (vm.persistent && inactive !== null) {
    const m = kibToMiB(nextBootKiB(vm, inactive));
    return { updated: false, memory: m, guaranteed: Math.min(vm.nextRunGuaranteed ?? m, m) };
  }
  return { updated: false, memory: vm.dom.memory, guaranteed: vm.stats.memGuaranteedSize };
}

async function nextRunAfter(
  ctx: OpContext,
  w: VmWorker,
  req: Request,
  changes: Changes,
  nextRunMatch: boolean,
  g: number,
  op: OpLog,
): Promise<SetMemoryResult['nextRun']> {
  const vm = w.require();
  if (nextRunMatch && changes.changed) {
    const nextG = Math.min(req.guaranteed ?? vm.nextRunGuaranteed ?? req.requested, req.requested);
    const r = await updateNextRun(ctx.client, vm, req.requested * 1024, changes.nodeDeltas, nextG, op);
    if (r) w.nextRunUpdated(r.inactiveMemoryKiB, r.nextRunGuaranteed);
    return { updated: true, memory: req.requested, guaranteed: nextG };
  }
  if (vm.persistent && vm.inactiveMemoryKiB !== null) {
    const m = kibToMiB(vm.inactiveMemoryKiB);
    return { updated: false, memory: m, guaranteed: Math.min(vm.nextRunGuaranteed ?? m, m) };
  }
  return { updated: false, memory: vm.dom.memory, guaranteed: g };
}

function noSuitable(decrement: number, virtio: boolean, skipped: SetMemoryResult['skipped']): VirtError {
  // Only DIMMs the guest would refuse fit: say so (force tries them).
  if (skipped.length > 0) {
    return new VirtError(
      'hotunplug',
      'not-movable',
      `the DIMMs that fit a decrease of ${decrement} MiB are held by the guest in ZONE_NORMAL (${skipped.map((d) => d.alias).join(', ')}): it would refuse them; nothing was changed (force: true tries anyway)`,
      { decrement, skipped },
    );
  }
  return new VirtError(
    'hotunplug',
    'no-suitable-device',
    virtio
      ? `no hot-plugged DIMM fits a decrease of ${decrement} MiB and the virtio-mem devices have nothing to give`
      : `no hot-plugged DIMM (or set of them) fits a decrease of ${decrement} MiB`,
    { decrement },
  );
}
