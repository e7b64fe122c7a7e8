// Checks of an operation request against the cached state of its VM.

import { isValidDimmAlias } from './dimm-xml.js';
import type { ParsedDimm } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import type { HotunplugSpec } from './types.js';
import { deviceState, isHotplugged, type VmRecord } from './vm-record.js';

export function checkRunning(vm: VmRecord, kind: 'hotplug' | 'hotunplug'): void {
  if (vm.status === 'Migration Source') {
    throw new VirtError('migrating', 'migrating', `VM ${vm.uuid} is migrating`, { vmId: vm.uuid });
  }
  if (vm.status !== 'Up') {
    throw new VirtError(kind, 'not-running', `VM ${vm.uuid} is not running (${vm.status})`, {
      vmId: vm.uuid,
      status: vm.status,
    });
  }
}

export function checkGuaranteed(g: number, memory: number, field: string): void {
  if (!Number.isSafeInteger(g) || g < 0)
    throw invalid(field, 'non-negative integer (MiB)', `${field} must be >= 0`);
  if (g > memory) {
    throw invalid(
      field,
      `<= ${memory} (memory after the change)`,
      `${field} ${g} MiB exceeds the VM's memory of ${memory} MiB`,
    );
  }
}

/** Validates an unplug request against the cached live state; returns the DIMM. */
export function checkUnplug(vm: VmRecord, mem: HotunplugSpec): ParsedDimm & { alias: string } {
  checkRunning(vm, 'hotunplug');
  if (typeof mem.alias !== 'string' || !isValidDimmAlias(mem.alias)) {
    throw invalid('memory.alias', 'matches ^ua-[A-Za-z0-9-]+$ or ^dimm[0-9]+$', 'alias is not a DIMM alias');
  }
  const dimm = vm.dom.dimms.find((d): d is ParsedDimm & { alias: string } => d.alias === mem.alias);
  if (!dimm) {
    throw new VirtError('hotunplug', 'device-not-found', `VM ${vm.uuid} has no DIMM ${mem.alias}`, {
      alias: mem.alias,
    });
  }
  if (mem.size !== dimm.size) {
    throw invalid(
      'memory.size',
      `equals the DIMM's size (${dimm.size})`,
      `DIMM ${dimm.alias} is ${dimm.size} MiB`,
    );
  }
  if (mem.node !== dimm.node) {
    throw invalid(
      'memory.node',
      `equals the DIMM's node (${dimm.node})`,
      `DIMM ${dimm.alias} is on node ${dimm.node}`,
    );
  }
  if (mem.address?.slot !== undefined && mem.address.slot !== dimm.slot) {
    throw invalid(
      'memory.address.slot',
      `equals the DIMM's slot (${dimm.slot})`,
      'address slot does not match',
    );
  }
  if (mem.address?.base !== undefined && mem.address.base.toLowerCase() !== dimm.base?.toLowerCase()) {
    throw invalid(
      'memory.address.base',
      `equals the DIMM's base (${dimm.base})`,
      'address base does not match',
    );
  }
  if (!isHotplugged(vm, dimm.alias)) {
    throw new VirtError(
      'hotunplug',
      'not-hotplugged',
      `DIMM ${dimm.alias} was present when the VM started; only hot-plugged DIMMs can be removed`,
      { alias: dimm.alias },
    );
  }
  if (deviceState(vm, dimm.alias) === 'unplugging') {
    throw new VirtError('hotunplug', 'already-unplugging', `DIMM ${dimm.alias} is already being unplugged`, {
      alias: dimm.alias,
    });
  }
  return dimm;
}
