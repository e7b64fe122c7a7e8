// The stats of a VM as clients see them, built from its record.

import { UNKNOWN } from './guest-memory.js';
import { devicesHash } from './hash.js';
import type { VmStats, VmStatsDevice } from './types.js';
import { virtioMemStats } from './virtio-mem.js';
import { deviceState, hasAlias, type VmRecord } from './vm-record.js';

export function buildStats(vm: VmRecord): VmStats {
  const devices: VmStatsDevice[] = vm.active
    ? vm.dom.dimms
        .filter(hasAlias)
        .map(
          (d): VmStatsDevice => ({
            model: 'dimm',
            alias: d.alias,
            size: d.size,
            node: d.node,
            slot: d.slot ?? -1,
            base: d.base ?? '',
            state: deviceState(vm, d.alias),
            // Frozen views (applyGuest), shared by successive stats, not copied.
            guest: vm.guest.get(d.alias) ?? UNKNOWN,
          }),
        )
        .sort((a, b) => a.slot - b.slot)
        .concat(
          vm.dom.virtioMem.map((v) =>
            virtioMemStats(
              v,
              v.alias !== null && deviceState(vm, v.alias) === 'resizing' ? 'resizing' : 'plugged',
            ),
          ),
        )
    : [];
  const memSize = vm.dom.memory;
  const g = vm.active ? (vm.meta.guaranteedMiB ?? memSize) : (vm.nextRunGuaranteed ?? memSize);
  return Object.freeze({
    vmId: vm.uuid,
    vmName: vm.dom.name,
    status: vm.status,
    memSize,
    memGuaranteedSize: Math.min(g, memSize),
    hash: devicesHash(memSize, devices),
    balloonActive: vm.dom.balloonActive,
    memoryDevices: devices,
  });
}

/** Whether clients must hear of the change from `prev` to `next`. */
export function statsChanged(prev: VmStats | undefined, next: VmStats): boolean {
  return (
    !prev ||
    prev.hash !== next.hash ||
    prev.status !== next.status ||
    prev.memGuaranteedSize !== next.memGuaranteedSize ||
    prev.vmName !== next.vmName ||
    prev.balloonActive !== next.balloonActive ||
    !sameGuest(prev, next)
  );
}

// Not in the hash (engines poll it for device changes, as with VDSM), but a
// changed answer of the guest is news for clients watching VM_status.
function sameGuest(a: VmStats, b: VmStats): boolean {
  const x = a.memoryDevices;
  const y = b.memoryDevices;
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) {
    const p = x[i]!;
    const q = y[i]!;
    if (p.alias !== q.alias || p.guest?.zone !== q.guest?.zone || p.guest?.online !== q.guest?.online) {
      return false;
    }
  }
  return true;
}
