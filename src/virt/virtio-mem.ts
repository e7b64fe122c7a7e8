// A virtio-mem device as vmhostd handles it: its VmStats entry, the rules a
// new requested size must follow, and the device XML that asks libvirt for it.
// libvirt (virDomainUpdateDeviceFlags, LIVE) changes only `<requested>` and
// finds the device by alias *and* PCI address: both must be sent, as read.

import type { ParsedVirtioMem } from './domain-xml.js';
import { invalid } from './errors.js';
import type { VmStatsDevice } from './types.js';
import { ATTR, fragmentBuilder } from './xml-common.js';

/** A virtio-mem device with the alias libvirt gave it (every live device has one). */
export type LiveVirtioMem = ParsedVirtioMem & { alias: string };

const ALIAS = /^(ua-[A-Za-z0-9-]{1,100}|virtiomem\d{1,5})$/;
const HEX = /^0x[0-9a-fA-F]{1,8}$/;
const ADDRESS_ATTRS = ['domain', 'bus', 'slot', 'function'] as const;

export function isLiveVirtioMem(v: ParsedVirtioMem): v is LiveVirtioMem {
  return v.alias !== null;
}

/** 'dddd:bb:ss.f' of a PCI address, '' when there is none. */
export function pciAddress(addr: Readonly<Record<string, string>> | null): string {
  if (addr?.type !== 'pci') return '';
  const hex = (k: string, width: number) =>
    Number.parseInt(addr[k] ?? '0', 16)
      .toString(16)
      .padStart(width, '0');
  return `${hex('domain', 4)}:${hex('bus', 2)}:${hex('slot', 2)}.${hex('function', 1)}`;
}

/** The device's VmStats entry; `state` is its lifecycle phase (device-lifecycle.ts). */
export function virtioMemStats(v: ParsedVirtioMem, state: 'plugged' | 'resizing'): VmStatsDevice {
  return {
    model: 'virtio-mem',
    alias: v.alias ?? '',
    size: v.size,
    node: v.node,
    slot: -1,
    base: '',
    state,
    requested: v.requested,
    current: v.current,
    block: v.block,
    address: pciAddress(v.address),
  };
}

/**
 * Throws a VirtError 'invalid' naming `field` unless `requested` (MiB) is a
 * size the device can be asked for: an integer, >= 0, <= its maximum, a
 * multiple of its block size.
 */
export function checkRequested(v: LiveVirtioMem, requested: number, field: string): void {
  if (!Number.isSafeInteger(requested)) {
    throw invalid(field, 'integer', `${field} must be an integer number of MiB (got ${requested})`);
  }
  if (requested < 0) {
    throw invalid(field, 'minimum', `${field} must be >= 0 MiB (got ${requested})`);
  }
  if (requested * 1024 > v.sizeKiB) {
    throw invalid(
      field,
      'maximum',
      `${field} must be <= ${v.size} MiB, the maximum size of ${v.alias} (got ${requested})`,
    );
  }
  if ((requested * 1024) % v.blockKiB !== 0) {
    throw invalid(
      field,
      'multipleOf',
      `${field} must be a multiple of ${v.blockKiB / 1024} MiB, the block size of ${v.alias} (got ${requested})`,
    );
  }
}

/** The device XML for virDomainUpdateDeviceFlags with a new requested size (MiB, checked). */
export function resizeXml(v: LiveVirtioMem, requestedMiB: number): string {
  if (!ALIAS.test(v.alias)) throw new RangeError(`virtio-mem alias must match ${ALIAS}`);
  const address: Record<string, string> = { [`${ATTR}type`]: 'pci' };
  if (v.address?.type !== 'pci') throw new RangeError(`virtio-mem ${v.alias} has no PCI address`);
  for (const k of ADDRESS_ATTRS) {
    const val = v.address[k];
    if (val === undefined) continue;
    if (!HEX.test(val)) throw new RangeError(`virtio-mem ${v.alias}: bad PCI address ${k} ${val}`);
    address[ATTR + k] = val;
  }
  const kib = (n: number) => ({ [`${ATTR}unit`]: 'KiB', '#text': String(n) });
  return fragmentBuilder.build({
    memory: {
      [`${ATTR}model`]: 'virtio-mem',
      target: {
        size: kib(v.sizeKiB),
        node: String(v.node),
        block: kib(v.blockKiB),
        requested: kib(requestedMiB * 1024),
      },
      alias: { [`${ATTR}name`]: v.alias },
      address,
    },
  }) as string;
}
