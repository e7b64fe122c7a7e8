// Hot plug of one DIMM (docs/design.md, "Operations"): validated against the
// cached live state, attached LIVE in the next free slot, confirmed by
// re-reading the XML through the VM's worker.

import { randomUUID } from 'node:crypto';
import { DomainAffect } from '../libvirt/types.js';
import { checkGuaranteed, checkRunning } from './checks.js';
import { buildAttachDimmXml, isUserAlias } from './dimm-xml.js';
import { kibToMiB, type ParsedDomain } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import { errMessage, libvirtDetails } from './libvirt-errors.js';
import { checkNotMigrating } from './migration-check.js';
import { nextRunInStep, updateNextRun } from './next-run.js';
import { observeDimm } from './observer.js';
import type { OpContext, OpLog } from './op-context.js';
import type { HotplugSpec } from './types.js';
import type { VmRecord } from './vm-record.js';
import type { VmWorker } from './vm-worker.js';

interface PlugPlan {
  alias: string;
  slot: number;
  sizeKiB: number;
}

/** Runs as one of the VM's operations; its outcome and duration go to the observer. */
export function plugOne(
  ctx: OpContext,
  w: VmWorker,
  mem: HotplugSpec,
  guaranteed: number | undefined,
  op: OpLog,
  nextRun: boolean,
): Promise<Readonly<VmRecord>> {
  const report = (outcome: string, durationMs: number) =>
    ctx.observer.plugFinished({ vmId: w.uuid, alias: mem.alias, outcome, durationMs });
  return observeDimm(report, 'plugged', () => plugDimm(ctx, w, mem, guaranteed, op, nextRun));
}

async function plugDimm(
  ctx: OpContext,
  w: VmWorker,
  mem: HotplugSpec,
  guaranteed: number | undefined,
  op: OpLog,
  nextRun: boolean,
): Promise<Readonly<VmRecord>> {
  checkRunning(w.require(), 'hotplug');
  await checkNotMigrating(ctx.client, w.require(), op);
  const vm = w.require();
  checkRunning(vm, 'hotplug');
  const plan = planPlug(vm.dom, mem, ctx.opts.dimmAlignmentMiB);
  if (guaranteed !== undefined) checkGuaranteed(guaranteed, vm.dom.memory + mem.size, 'memGuaranteedSize');
  const nextRunMatch = nextRun && nextRunInStep(vm);

  await attach(ctx, vm, mem, plan, op);
  const after = await confirmAttached(w, plan.alias);
  op('attached', { alias: plan.alias, slot: plan.slot, memSize: after.dom.memory });
  if (guaranteed !== undefined) {
    // The DIMM is attached whatever happens to this write: a failure is logged,
    // and the value is written with the VM's next metadata write.
    await w
      .setGuaranteed(guaranteed)
      .catch((err: unknown) => op('metadata update failed', libvirtDetails(err)));
  }
  if (nextRunMatch && after.inactiveMemoryKiB !== null) {
    const r = await updateNextRun(
      ctx.client,
      after,
      after.inactiveMemoryKiB + plan.sizeKiB,
      new Map([[mem.node, plan.sizeKiB]]),
      null,
      op,
    );
    if (r) w.nextRunUpdated(r.inactiveMemoryKiB, r.nextRunGuaranteed);
  }
  return w.require();
}

/** Checks the request against the live definition and picks the alias and slot. */
function planPlug(dom: ParsedDomain, mem: HotplugSpec, align: number): PlugPlan {
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
    throw new VirtError('hotplug', 'no-free-slot', 'the VM has no memory hotplug slots (<maxMemory slots>)');
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
  let slot = 0;
  while (slot < dom.slots && used.has(slot)) slot++;
  if (slot === dom.slots) {
    throw new VirtError('hotplug', 'no-free-slot', `all ${dom.slots} memory slots are in use`);
  }
  return { alias, slot, sizeKiB };
}

async function attach(
  ctx: OpContext,
  vm: Readonly<VmRecord>,
  mem: HotplugSpec,
  plan: PlugPlan,
  op: OpLog,
): Promise<void> {
  const xml = buildAttachDimmXml({ sizeMiB: mem.size, node: mem.node, alias: plan.alias, slot: plan.slot });
  op('attach requested', { alias: plan.alias, slot: plan.slot });
  try {
    await ctx.client.attachDeviceFlags(vm.ref, xml, DomainAffect.LIVE);
  } catch (err) {
    op('attach failed', libvirtDetails(err));
    throw new VirtError('hotplug', 'libvirt-error', `attach failed: ${errMessage(err)}`, libvirtDetails(err));
  }
}

async function confirmAttached(w: VmWorker, alias: string): Promise<Readonly<VmRecord>> {
  const after = await w.reload();
  if (!after?.dom.dimms.some((d) => d.alias === alias)) {
    throw new VirtError('hotplug', 'libvirt-error', `DIMM ${alias} is not in the live XML after attach`);
  }
  return after;
}
