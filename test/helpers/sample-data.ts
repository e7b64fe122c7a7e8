// Small sample values shared by unit tests: a test-guest domain spec and a
// DIMM as VmStats lists it.
import type { VmStatsDevice } from '../../src/virt/types.js';
import type { GuestDomainSpec } from '../host/domain-xml.js';

export const sampleGuestSpec: GuestDomainSpec = {
  name: 'vmhostd-test-x-1',
  uuid: '3f0c2d9e-8a3b-4c55-9d0e-1a2b3c4d5e6f',
  kind: 'cooperative',
  memoryMiB: 512,
  maxMemoryMiB: 8192,
  slots: 16,
  bootDimmsMiB: [],
  kernelPath: '/k/vmlinuz',
  initrdPath: '/k/initramfs.cpio.gz',
  consolePath: '/var/lib/vmhostd-test/x.console.log',
};

/** A 128 MiB DIMM in slot 1, as VmStats lists it. */
export function statsDimm(alias: string, over: Partial<VmStatsDevice> = {}): VmStatsDevice {
  return {
    model: 'dimm',
    alias,
    size: 128,
    node: 0,
    slot: 1,
    base: '0x100000000',
    state: 'plugged',
    ...over,
  };
}
