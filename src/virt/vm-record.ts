// A VM as the registry caches it, and what that cached state says about its
// DIMMs. Only the VM's worker (vm-worker.ts) writes a VmRecord; everything
// else reads it.

import type { DomainRef, DomainStateInfo } from '../libvirt/types.js';
import { type DeviceSet, marksOf, phaseOf, resizeMarksOf } from './device-lifecycle.js';
import type { ParsedDimm, ParsedDomain } from './domain-xml.js';
import type { GuestViews } from './guest-probe.js';
import type { VmMetadata } from './metadata.js';
import type { DeviceState, VmStats, VmStatus } from './types.js';

/** The facts of the current run we keep in the domain's live metadata (besides the unplug marks). */
export interface RunFacts {
  /** MiB; null when never set (defaults to the VM's memory). */
  guaranteedMiB: number | null;
  /** Aliases of the DIMMs present when the VM started; null when not recorded. */
  bootDimms: string[] | null;
}

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
  /** `<requested>` (KiB) of the next-run definition's virtio-mem devices, by alias; null when not read. */
  inactiveVirtioRequestedKiB: ReadonlyMap<string, number> | null;
  /** Guaranteed MiB in the next-run metadata, null when unset. */
  nextRunGuaranteed: number | null;
  /** Our live metadata; in memory it is authoritative, libvirt holds the copy. */
  meta: RunFacts;
  /** The device lifecycle state (device-lifecycle.ts): which DIMMs are being unplugged, which virtio-mem devices resized. */
  devices: DeviceSet;
  /** The runtime id `meta` belongs to (a new boot resets it). */
  metaBootId: number | null;
  stats: VmStats;
  metaWrite: Promise<void>;
  /** The DIMMs listed as present by the last metadata write that completed (or that we read); null when none did. */
  recordedPresent: ReadonlySet<string> | null;
  /** The present list of the last metadata write issued, to tell when the list changed. */
  issuedPresent: readonly string[] | null;
  /**
   * What the guest said of each DIMM when last asked (guest-probe.ts): not
   * device state, only shown in stats and read by pre-flights. Reset on a stop or boot.
   */
  guest: GuestViews;
}

/** What we write into the domain's live metadata. */
export function metadataOf(
  vm: VmRecord,
): VmMetadata & { present: string[]; resizing: VmMetadata['resizing'] } {
  return {
    ...vm.meta,
    unplugging: marksOf(vm.devices),
    present: [...vm.devices.present],
    resizing: resizeMarksOf(vm.devices),
  };
}

export function isHotplugged(vm: VmRecord, alias: string): boolean {
  return !(vm.meta.bootDimms ?? []).includes(alias);
}

export function deviceState(vm: VmRecord, alias: string): DeviceState {
  return phaseOf(vm.devices, alias);
}

export function hasAlias(d: ParsedDimm): d is ParsedDimm & { alias: string } {
  return d.alias !== null;
}

export function presentAliases(dom: ParsedDomain): string[] {
  return dom.dimms.filter(hasAlias).map((d) => d.alias);
}
