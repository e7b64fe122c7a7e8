// Keeps a persistent domain's next-run definition in step with a live memory
// change (docs/design.md, "The feature").

import { DomainAffect, DomainXmlFlags, type LibvirtApi, MetadataType } from '../libvirt/types.js';
import { kibToMiB } from './domain-xml.js';
import { libvirtDetails } from './libvirt-errors.js';
import { buildMetadata, emptyMetadata, METADATA_PREFIX, METADATA_URI } from './metadata.js';
import { editInactiveMemory } from './next-run-xml.js';
import type { OpLog } from './op-context.js';
import type { VmRecord } from './vm-record.js';

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
): Promise<{ inactiveMemoryKiB: number; nextRunGuaranteed: number | null } | null> {
  try {
    const xml = await client.getXMLDesc(vm.ref, DomainXmlFlags.INACTIVE | DomainXmlFlags.SECURE);
    await client.defineXML(editInactiveMemory(xml, { totalKiB, nodeDeltasKiB }));
    const nextMiB = kibToMiB(totalKiB);
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
    op('next-run configuration updated', { nextRunMemoryKiB: totalKiB, nextRunGuaranteed: g });
    return { inactiveMemoryKiB: totalKiB, nextRunGuaranteed: g ?? vm.nextRunGuaranteed };
  } catch (err) {
    op('next-run configuration update failed', libvirtDetails(err));
    return null;
  }
}
