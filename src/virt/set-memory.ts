// "Set memory to X" (DESIGN sections 1 and 4): the planner's unplugs or one
// hot plug, then guaranteed memory and the next-run definition.

import { checkGuaranteed, checkRunning } from './checks.js';
import { kibToMiB, type ParsedDimm } from './domain-xml.js';
import { VirtError } from './errors.js';
import { plugOne } from './hotplug.js';
import { unplugOne } from './hotunplug.js';
import { libvirtDetails } from './libvirt-errors.js';
import { updateNextRun } from './next-run.js';
import type { OpContext, OpLog } from './op-context.js';
import { bytesToMiB, planMemory } from './planner.js';
import type { SetMemoryResult } from './types.js';
import { deviceState, hasAlias, isHotplugged } from './vm-record.js';

/** Runs inside the VM's serial worker; the request's numbers are already validated. */
export async function setMemoryNow(
  ctx: OpContext,
  uuid: string,
  memoryBytes: number,
  opts: { guaranteedBytes?: number; timeoutMs?: number },
  op: OpLog,
): Promise<SetMemoryResult> {
  const { registry } = ctx;
  let vm = registry.require(uuid);
  checkRunning(vm, 'hotunplug');
  const requested = bytesToMiB(memoryBytes);
  const guaranteed = opts.guaranteedBytes === undefined ? undefined : bytesToMiB(opts.guaranteedBytes);
  const before = vm.dom;
  const nextRunMatch = vm.persistent && vm.inactiveMemoryKiB === before.memoryKiB;
  const plan = planMemory(
    before.memory,
    before.dimms.filter(hasAlias).map((d) => ({
      alias: d.alias,
      size: d.size,
      state: deviceState(vm, d.alias),
      hotplugged: isHotplugged(vm, d.alias),
    })),
    memoryBytes,
    ctx.opts.dimmAlignmentMiB,
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
      const cur = registry.get(uuid);
      const dimm = cur?.dom.dimms.find((d): d is ParsedDimm & { alias: string } => d.alias === pick.alias);
      if (!cur || !dimm) {
        failed.push({ alias: pick.alias, reason: cur ? 'device-not-found' : 'vm-gone' });
        continue;
      }
      try {
        await unplugOne(ctx, cur, dimm, {
          guaranteed: undefined,
          timeoutMs: opts.timeoutMs ?? ctx.opts.unplugTimeoutMs,
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
    if (guaranteed !== undefined) checkGuaranteed(guaranteed, requested, 'guaranteed');
    await plugOne(ctx, uuid, { size: plan.plugSize, node }, undefined, op, false);
    nodeDeltas.set(node, plan.plugSize * 1024);
  }

  vm = registry.require(uuid);
  const memSize = vm.dom.memory;
  const g = Math.min(guaranteed ?? vm.meta.guaranteedMiB ?? memSize, memSize);
  if (vm.active && g !== vm.meta.guaranteedMiB) {
    vm.meta.guaranteedMiB = g;
    await registry.persistMeta(vm).catch((err: unknown) => op('metadata update failed', libvirtDetails(err)));
  }

  // Next run gets the request itself (unrounded), unless the unplugs all failed.
  const changed = plan.kind !== 'decrease' || unplugged.length > 0;
  let nextRun: SetMemoryResult['nextRun'];
  if (nextRunMatch && changed) {
    const nextG = Math.min(guaranteed ?? vm.nextRunGuaranteed ?? requested, requested);
    await updateNextRun(ctx.client, vm, requested * 1024, nodeDeltas, nextG, op);
    nextRun = { updated: true, memory: requested, guaranteed: nextG };
  } else if (vm.persistent && vm.inactiveMemoryKiB !== null) {
    const m = kibToMiB(vm.inactiveMemoryKiB);
    nextRun = { updated: false, memory: m, guaranteed: Math.min(vm.nextRunGuaranteed ?? m, m) };
  } else {
    nextRun = { updated: false, memory: memSize, guaranteed: g };
  }
  registry.publish(vm);
  const result = { memSize, memGuaranteedSize: vm.stats.memGuaranteedSize, unplugged, failed, nextRun };
  op('done', { ...result });
  return result;
}
