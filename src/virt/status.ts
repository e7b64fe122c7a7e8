// Maps libvirt domain state to VDSM-style VM status.

import { DomainState, type DomainStateInfo } from '../libvirt/types.js';
import type { VmStatus } from './types.js';

/** virDomainPausedReason values meaning an outgoing migration. */
const PAUSED_MIGRATION = 2;
const PAUSED_POSTCOPY = 12;
const PAUSED_STARTING_UP = 11;

export function statusOf(s: DomainStateInfo): VmStatus {
  switch (s.state) {
    case DomainState.RUNNING:
    case DomainState.BLOCKED:
      return 'Up';
    case DomainState.PAUSED:
      if (s.reason === PAUSED_MIGRATION || s.reason === PAUSED_POSTCOPY) return 'Migration Source';
      if (s.reason === PAUSED_STARTING_UP) return 'WaitForLaunch';
      return 'Paused';
    case DomainState.PMSUSPENDED:
      return 'Paused';
    case DomainState.SHUTDOWN:
      return 'Powering down';
    case DomainState.SHUTOFF:
    case DomainState.CRASHED:
      return 'Down';
    default:
      return 'Unknown';
  }
}

/** A domain with a live definition (QEMU process). */
export function isActive(s: DomainStateInfo): boolean {
  return (
    s.state !== DomainState.SHUTOFF && s.state !== DomainState.CRASHED && s.state !== DomainState.NOSTATE
  );
}
