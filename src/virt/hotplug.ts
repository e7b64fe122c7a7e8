// Hot plug of one DIMM (DESIGN section 4): validated against the cached live
// state, attached LIVE in the next free slot, confirmed by re-reading the XML.

import { randomUUID } from 'node:crypto';
import { DomainAffect } from '../libvirt/types.js';
import { checkGuaranteed, checkRunning } from './checks.js';
import { buildAttachDimmXml, isUserAlias } from './dimm-xml.js';
import { kibToMiB } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import { errMessage, libvirtDetails } from './libvirt-errors.js';
import { updateNextRun } from './next-run.js';
import type { OpContext, OpLog } from './op-context.js';
import type { HotplugSpec } from './types.js';
import type { VmRecord } from './vm-record.js';

/** Runs inside the VM's serial worker. */
export async function plugOne(
  ctx: OpContext,
  uuid: string,
  mem: HotplugSpec,
  guaranteed: number | undefined,
  op: OpLog,
  nextRun: boolean,
): Promise<VmRecord> {
  const { client, registry } = ctx;
  const vm = registry.require(uuid);
  checkRunning(vm, 'hotplug');
  const dom = vm.dom;
  const align = ctx.opts.dimmAlignmentMiB;
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
  let slot = -1;
  for (let s = 0; s < dom.slots; s++) {
    if (!used.has(s)) {
      slot = s;
      break;
    }
  }
  if (slot < 0) throw new VirtError('hotplug', 'no-free-slot', `all ${dom.slots} memory slots are in use`);
  const newMem = dom.memory + mem.size;
  if (guaranteed !== undefined) checkGuaranteed(guaranteed, newMem, 'memGuaranteedSize');

  const nextRunMatch = vm.persistent && vm.inactiveMemoryKiB === dom.memoryKiB;
  const xml = buildAttachDimmXml({ sizeMiB: mem.size, node: mem.node, alias, slot });
  op('attach requested', { alias, slot });
  try {
    await client.attachDeviceFlags(vm.ref, xml, DomainAffect.LIVE);
  } catch (err) {
    op('attach failed', libvirtDetails(err));
    throw new VirtError('hotplug', 'libvirt-error', `attach failed: ${errMessage(err)}`, libvirtDetails(err));
  }
  const after = await registry.refresh(vm.ref);
  if (!after?.dom.dimms.some((d) => d.alias === alias)) {
    throw new VirtError('hotplug', 'libvirt-error', `DIMM ${alias} is not in the live XML after attach`);
  }
  op('attached', { alias, slot, memSize: after.dom.memory });
  if (guaranteed !== undefined) {
    after.meta.guaranteedMiB = guaranteed;
    await registry.persistMeta(after);
  }
  if (nextRun && nextRunMatch && after.inactiveMemoryKiB !== null) {
    await updateNextRun(
      client,
      after,
      after.inactiveMemoryKiB + sizeKiB,
      new Map([[mem.node, sizeKiB]]),
      null,
      op,
    );
  }
  registry.publish(after);
  return after;
}
