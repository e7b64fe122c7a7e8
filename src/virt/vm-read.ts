// Reading one domain from libvirt: what a reload of a VM needs, read before
// the worker applies it (no record is touched here).

import {
  type DomainRef,
  type DomainStateInfo,
  DomainXmlFlags,
  type LibvirtApi,
  ListDomainsFlags,
} from '../libvirt/types.js';
import { type ParsedDomain, parseDomainXml } from './domain-xml.js';
import { isNoDomain } from './libvirt-errors.js';
import { isActive } from './status.js';
import type { VmRecord } from './vm-record.js';

/** Why a VM is reloaded, as far as it changes what is read and how it is applied. */
export interface ReloadHow {
  /** A STARTED event: a new boot. */
  boot?: boolean;
  /** Re-read the next-run definition too (it may have changed). */
  inactive?: boolean;
  /** Known persistence (from an event or a listing). */
  persistent?: boolean;
}

export function mergeHow(a: ReloadHow, b: ReloadHow): ReloadHow {
  return {
    ...(a.boot || b.boot ? { boot: true } : {}),
    ...(a.inactive || b.inactive ? { inactive: true } : {}),
    ...((b.persistent ?? a.persistent) !== undefined ? { persistent: (b.persistent ?? a.persistent)! } : {}),
  };
}

export type Snapshot =
  | { kind: 'gone' }
  | {
      kind: 'live';
      ref: DomainRef;
      state: DomainStateInfo;
      dom: ParsedDomain;
      persistent: boolean;
      /** The next-run definition, when it was read. */
      definition: ParsedDomain | null;
    };

/** Reads state, live XML and, when needed, the definition; `gone` when libvirt has no such domain. */
export async function readDomain(
  client: LibvirtApi,
  ref: DomainRef,
  how: ReloadHow,
  known: Readonly<VmRecord> | undefined,
): Promise<Snapshot> {
  try {
    const [state, xml] = await Promise.all([client.getState(ref), client.getXMLDesc(ref, 0)]);
    const dom = parseDomainXml(xml);
    const active = isActive(state);
    const persistent =
      how.persistent ??
      known?.persistent ??
      (await client.listAllDomains(ListDomainsFlags.PERSISTENT)).some(
        (d) => d.uuid.toLowerCase() === ref.uuid,
      );
    // A running VM without our metadata gets its boot-time DIMMs guessed from the definition.
    const adopting = active && !how.boot && dom.metadata?.bootDimms == null;
    const needDefinition =
      persistent && (how.inactive || !known || known.inactiveMemoryKiB === null || adopting);
    const definition = !needDefinition
      ? null
      : active
        ? parseDomainXml(await client.getXMLDesc(ref, DomainXmlFlags.INACTIVE))
        : dom;
    return { kind: 'live', ref, state, dom, persistent, definition };
  } catch (err) {
    if (isNoDomain(err)) return { kind: 'gone' };
    throw err;
  }
}
