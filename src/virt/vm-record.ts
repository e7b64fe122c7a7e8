// A VM as the registry caches it, and what that cached state says about its DIMMs.

import type { DomainRef, DomainStateInfo } from '../libvirt/types.js';
import type { ParsedDimm, ParsedDomain } from './domain-xml.js';
import type { VmMetadata } from './metadata.js';
import type { DeviceState, VmStats, VmStatus } from './types.js';

export interface VmRecord {
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

export function isHotplugged(vm: VmRecord, alias: string): boolean {
  return !(vm.meta.bootDimms ?? []).includes(alias);
}

export function deviceState(vm: VmRecord, alias: string): DeviceState {
  return vm.inFlight.has(alias) || vm.meta.unplugging.some((u) => u.alias === alias)
    ? 'unplugging'
    : 'plugged';
}

export function hasAlias(d: ParsedDimm): d is ParsedDimm & { alias: string } {
  return d.alias !== null;
}
