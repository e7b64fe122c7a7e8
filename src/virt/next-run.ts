// Keeps a persistent domain's next-run definition in step with a live memory
// change (docs/design.md, "The feature").

import { DomainAffect, DomainXmlFlags, type LibvirtApi, MetadataType } from '../libvirt/types.js';
import { kibToMiB } from './domain-xml.js';
import { libvirtDetails } from './libvirt-errors.js';
import { buildMetadata, emptyMetadata, METADATA_PREFIX, METADATA_URI } from './metadata.js';
import { editInactiveMemory } from './next-run-xml.js';
import type { OpLog } from './op-context.js';
import type { VmRecord } from './vm-record.js';

export interface NextRunWritten {
  inactiveMemoryKiB: number;
  nextRunGuaranteed: number | null;
  inactiveVirtioRequestedKiB: ReadonlyMap<string, number> | null;
}

/**
 * Whether the next-run definition is in step with the running VM, the
 * condition for an operation to carry its change into it (docs/design.md,
 * "The feature"): a persistent domain whose definition's `<memory>` equals
 * the live one (both count DIMMs, and virtio-mem devices at their maximum)
 * and whose virtio-mem devices ask for what the live ones ask (a device's
 * next-boot size is its `<requested>`).
 */
export function nextRunInStep(vm: Readonly<VmRecord>): boolean {
  if (!vm.persistent || vm.inactiveMemoryKiB !== vm.dom.memoryKiB) return false;
  const def = vm.inactiveVirtioRequestedKiB;
  return vm.dom.virtioMem.every(
    (v) => v.alias === null || (def !== null && def.get(v.alias) === v.requestedKiB),
  );
}

/**
 * nextRunInStep on a fresh read of the definition for a persistent VM with
 * virtio-mem devices (one libvirt read, before an operation that is slow
 * anyway): an operator's `virsh update-memory-device --config` just before
 * the call must not be overwritten because our copy was a moment old.
 */
export async function freshInStep(w: {
  require(): Readonly<VmRecord>;
  reload(how: { inactive: boolean }): Promise<unknown>;
}): Promise<boolean> {
  const vm = w.require();
  if (vm.persistent && vm.dom.virtioMem.length > 0) await w.reload({ inactive: true });
  return nextRunInStep(w.require());
}

/** What the next boot gets (KiB): the definition's `<memory>` with each virtio-mem device at its `<requested>`. */
export function nextBootKiB(
  vm: Readonly<VmRecord>,
  totalKiB: number,
  requested: ReadonlyMap<string, number> | null = vm.inactiveVirtioRequestedKiB,
): number {
  let kib = totalKiB;
  for (const v of vm.dom.virtioMem) {
    const r = v.alias === null ? undefined : requested?.get(v.alias);
    kib -= v.sizeKiB - (r ?? v.sizeKiB);
  }
  return kib;
}

/**
 * After VM.resizeMemoryDevice: the definition's device asks for what the live
 * one asks now (the target, the settled current, or the kept request), when
 * the definition was in step before. Returns whether it was written and the
 * device's next-boot `requested` (MiB; the live one for a transient VM).
 */
export async function resizeNextRun(
  client: LibvirtApi,
  w: { require(): Readonly<VmRecord>; nextRunUpdated: VmWorkerNextRun },
  alias: string,
  inStep: boolean,
  op: OpLog,
): Promise<{ updated: boolean; requested: number }> {
  const vm = w.require();
  const dev = vm.dom.virtioMem.find((v) => v.alias === alias);
  const def = vm.inactiveVirtioRequestedKiB?.get(alias);
  const live = dev?.requestedKiB;
  if (!vm.persistent || live === undefined) return { updated: false, requested: kibToMiB(live ?? 0) };
  if (inStep && vm.inactiveMemoryKiB !== null && def !== live) {
    const r = await updateNextRun(
      client,
      vm,
      vm.inactiveMemoryKiB,
      new Map(),
      null,
      op,
      new Map([[alias, live]]),
    );
    if (r) {
      w.nextRunUpdated(r.inactiveMemoryKiB, r.nextRunGuaranteed, r.inactiveVirtioRequestedKiB);
      return { updated: true, requested: kibToMiB(live) };
    }
  }
  return { updated: false, requested: kibToMiB(def ?? live) };
}

type VmWorkerNextRun = (
  inactiveMemoryKiB: number,
  nextRunGuaranteed: number | null,
  inactiveVirtioRequestedKiB?: ReadonlyMap<string, number> | null,
) => void;

/**
 * Rewrites the next-run definition's memory (and guaranteed when given) and
 * returns what it now holds, for the VM's worker to record. Failures are
 * logged, not thrown (null): the live change stands.
 */
export async function updateNextRun(
  client: LibvirtApi,
  vm: Readonly<VmRecord>,
  totalKiB: number,
  nodeDeltasKiB: ReadonlyMap<number, number>,
  guaranteed: number | null,
  op: OpLog,
  requestedKiB?: ReadonlyMap<string, number>,
): Promise<NextRunWritten | null> {
  try {
    const xml = await client.getXMLDesc(vm.ref, DomainXmlFlags.INACTIVE | DomainXmlFlags.SECURE);
    await client.defineXML(
      editInactiveMemory(xml, { totalKiB, nodeDeltasKiB, ...(requestedKiB ? { requestedKiB } : {}) }),
    );
    const virtio =
      vm.inactiveVirtioRequestedKiB && requestedKiB
        ? new Map([...vm.inactiveVirtioRequestedKiB, ...requestedKiB])
        : vm.inactiveVirtioRequestedKiB;
    const nextMiB = kibToMiB(nextBootKiB(vm, totalKiB, virtio));
    const g = guaranteed ?? (vm.nextRunGuaranteed !== null ? Math.min(vm.nextRunGuaranteed, nextMiB) : null);
    if (g !== null && g !== vm.nextRunGuaranteed) {
      const md = emptyMetadata();
      md.guaranteedMiB = g;
      await client.setMetadata(
        vm.ref,
        MetadataType.ELEMENT,
        buildMetadata(md),
        METADATA_PREFIX,
        METADATA_URI,
        DomainAffect.CONFIG,
      );
    }
    op('next-run configuration updated', {
      nextRunMemoryKiB: totalKiB,
      nextRunGuaranteed: g,
      ...(requestedKiB ? { nextRunRequestedKiB: Object.fromEntries(requestedKiB) } : {}),
    });
    return {
      inactiveMemoryKiB: totalKiB,
      nextRunGuaranteed: g ?? vm.nextRunGuaranteed,
      inactiveVirtioRequestedKiB: virtio,
    };
  } catch (err) {
    op('next-run configuration update failed', libvirtDetails(err));
    return null;
  }
}
