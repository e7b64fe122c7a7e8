// Resizing one virtio-mem device (VM.resizeMemoryDevice), as one of the VM's
// serial operations: check, ask libvirt for the new `requested`, wait until
// the guest's `current` gets there, the deadline passes, or it stops moving.
//
// A resize that ends short is reported with the true `current` (re-read from
// the live XML), never hidden. What then happens to `requested` is the
// caller's choice (`onFailure`):
// - 'settle' (default): `requested` is set to the `current` reached, so the
//   guest stops churning (its driver retries a shrink it cannot finish every
//   few seconds to minutes) and the VM stays at the size the error reported:
//   nothing changes later behind the operator's back.
// - 'keep': `requested` stays, the guest keeps trying; VM_status and
//   memory_device_size_changed notifications report it if it gets there.

import { DomainAffect, type DomainRef, type LibvirtApi } from '../libvirt/types.js';
import type { ParsedDomain } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import { errMessage, libvirtDetails } from './libvirt-errors.js';
import type { OpLog } from './op-context.js';
import { watchSize } from './resize-wait.js';
import { checkRequested, isLiveVirtioMem, type LiveVirtioMem, resizeXml } from './virtio-mem.js';

export type OnResizeFailure = 'settle' | 'keep';

/** The VM as the resize sees it. */
export interface ResizeView {
  readonly active: boolean;
  readonly ref: DomainRef;
  readonly dom: ParsedDomain;
}

/** The VM's record and a way to re-read it (its registry or worker). */
export interface ResizeTarget {
  readonly uuid: string;
  /** Throws VirtError no-such-vm when the VM is gone. */
  record(): ResizeView;
  /** Re-reads the VM from libvirt; undefined when it is gone. */
  reload(): Promise<ResizeView | undefined>;
}

export interface ResizeOptions {
  /** MiB */
  requested: number;
  timeoutMs: number;
  stallMs: number;
  onFailure: OnResizeFailure;
  op: OpLog;
  /** Each size the device reports while the call waits (KiB). */
  onProgress?: (alias: string, requestedKiB: number, currentKiB: number) => void;
}

export interface ResizeResult {
  alias: string;
  /** MiB */
  requested: number;
  current: number;
  memSize: number;
}

/** The device to resize; throws the caller's error (nothing changed) otherwise. Answerable at once. */
export function checkResize(vm: ResizeView, alias: string, requested: number): LiveVirtioMem {
  if (!vm.active) {
    throw new VirtError('hotunplug', 'not-running', `VM ${vm.dom.name} is not running`, { alias });
  }
  const dev = vm.dom.virtioMem.filter(isLiveVirtioMem).find((v) => v.alias === alias);
  if (!dev) {
    if (vm.dom.dimms.some((d) => d.alias === alias)) {
      throw invalid(
        'alias',
        'virtio-mem device',
        `${alias} is a DIMM, not a virtio-mem device: a DIMM is removed whole (VM.hotunplugMemory)`,
      );
    }
    throw new VirtError('hotunplug', 'device-not-found', `no virtio-mem device ${alias} on the VM`, {
      alias,
    });
  }
  checkRequested(dev, requested, 'requested');
  return dev;
}

export async function resizeOne(
  client: LibvirtApi,
  target: ResizeTarget,
  alias: string,
  o: ResizeOptions,
): Promise<ResizeResult> {
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) {
    throw invalid('timeout', '> 0', 'timeout must be positive');
  }
  const vm = target.record();
  const dev = checkResize(vm, alias, o.requested);
  const targetKiB = o.requested * 1024;
  if (dev.requestedKiB === targetKiB && dev.currentKiB === targetKiB) {
    o.op('already at the requested size', { requested: o.requested });
    return { alias, requested: o.requested, current: dev.current, memSize: vm.dom.memory };
  }
  o.op('resizing', { from: dev.current, requested: o.requested, timeoutMs: o.timeoutMs, stallMs: o.stallMs });
  const watch = watchSize(client, {
    uuid: target.uuid,
    alias,
    targetKiB,
    startKiB: dev.currentKiB,
    timeoutMs: o.timeoutMs,
    stallMs: o.stallMs,
    onSize: (kib) => o.onProgress?.(alias, targetKiB, kib),
  });
  try {
    await client.updateDeviceFlags(vm.ref, resizeXml(dev, o.requested), DomainAffect.LIVE);
  } catch (err) {
    watch.cancel();
    o.op('update failed', libvirtDetails(err));
    throw new VirtError('hotunplug', 'libvirt-error', `libvirt refused the resize: ${errMessage(err)}`, {
      alias,
      requested: o.requested,
      current: dev.current,
      ...libvirtDetails(err),
    });
  }
  // The device may have been there already (an earlier request the guest had not finished).
  const { end } = await watch.result;
  // The live XML decides: the last event may be late.
  const after = await target.reload().catch(() => undefined);
  const now = after?.dom.virtioMem.find((v) => v.alias === alias);
  if (!after?.active || !now) {
    o.op('VM gone while resizing');
    throw new VirtError('hotunplug', 'vm-gone', `the VM stopped while ${alias} was resizing`, {
      alias,
      requested: o.requested,
    });
  }
  if (now.currentKiB === targetKiB) {
    o.op('resized', { current: now.current, memSize: after.dom.memory, end });
    return { alias, requested: o.requested, current: now.current, memSize: after.dom.memory };
  }
  const reason = end === 'stalled' ? 'stalled' : 'timeout';
  let requestedNow = o.requested;
  if (o.onFailure === 'settle') requestedNow = await settle(client, target, alias, o);
  o.op(`resize ${reason === 'stalled' ? 'stalled' : 'timed out'}`, {
    requested: o.requested,
    current: now.current,
    requestedNow,
  });
  const what =
    reason === 'stalled'
      ? `stopped moving at ${now.current} MiB`
      : `had reached ${now.current} MiB at the deadline (${Math.round(o.timeoutMs / 1000)} s)`;
  throw new VirtError(
    'hotunplug',
    reason,
    `virtio-mem ${alias} ${what}, requested ${o.requested} MiB; requested is now ${requestedNow} MiB` +
      (o.onFailure === 'keep' ? ' (the guest keeps trying)' : ''),
    { alias, requested: o.requested, current: now.current, requestedNow, onFailure: o.onFailure },
  );
}

/** Sets `requested` to where the device is, so the guest stops trying; returns it (MiB). */
async function settle(
  client: LibvirtApi,
  target: ResizeTarget,
  alias: string,
  o: ResizeOptions,
): Promise<number> {
  const vm = await target.reload().catch(() => undefined);
  const dev = vm?.dom.virtioMem.filter(isLiveVirtioMem).find((v) => v.alias === alias);
  if (!vm?.active || !dev) return o.requested;
  // current is always a whole number of blocks (the guest plugs blocks).
  const to = Math.floor(dev.currentKiB / dev.blockKiB) * dev.blockKiB;
  try {
    await client.updateDeviceFlags(vm.ref, resizeXml(dev, to / 1024), DomainAffect.LIVE);
  } catch (err) {
    o.op('warning: could not settle requested to current', libvirtDetails(err));
    return dev.requested;
  }
  await target.reload().catch(() => undefined);
  return to / 1024;
}
