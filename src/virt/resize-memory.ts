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
import type { DeviceEvent, OnResizeFailure } from './device-lifecycle.js';
import type { ParsedDomain } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import { MARK_AFTER_MS } from './hotunplug.js';
import { errMessage, libvirtDetails } from './libvirt-errors.js';
import { observeDimm } from './observer.js';
import type { OpLog } from './op-context.js';
import { checkRequested, isLiveVirtioMem, type LiveVirtioMem, resizeXml } from './virtio-mem.js';
import type { ResizeRequest, ResizeSettled } from './vm-worker.js';

export type { OnResizeFailure } from './device-lifecycle.js';

/** The VM as the resize sees it. */
export interface ResizeView {
  readonly active: boolean;
  readonly ref: DomainRef;
  readonly dom: ParsedDomain;
}

/** The VM's worker, as far as a resize uses it. */
export interface ResizeTarget {
  readonly uuid: string;
  /** Throws VirtError no-such-vm when the VM is gone. */
  require(): ResizeView;
  /** Re-reads the VM from libvirt; undefined when it is gone. */
  reload(): Promise<ResizeView | undefined>;
  requestResize(alias: string, r: ResizeRequest): Promise<ResizeSettled>;
  /** Returns the metadata write the event asked for, if any. */
  submit(e: DeviceEvent): Promise<void> | undefined;
}

export interface ResizeOptions {
  /** MiB */
  requested: number;
  timeoutMs: number;
  stallMs: number;
  onFailure: OnResizeFailure;
  op: OpLog;
  /** Told how the resize ended and how long it took (the daemon's metrics). */
  report?: (outcome: string, durationMs: number) => void;
}

export interface ResizeResult {
  alias: string;
  /** MiB */
  requested: number;
  current: number;
  memSize: number;
}

/** VM.resizeMemoryDevice's answer: the resize, and the device in the next-run definition (next-run.ts, resizeNextRun). */
export type ResizeCallResult = ResizeResult & { nextRun: { updated: boolean; requested: number } };

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
  const { report } = o;
  return report
    ? observeDimm(report, 'resized', () => resize(client, target, alias, o))
    : resize(client, target, alias, o);
}

async function resize(
  client: LibvirtApi,
  target: ResizeTarget,
  alias: string,
  o: ResizeOptions,
): Promise<ResizeResult> {
  let vm = target.require();
  let dev = checkResize(vm, alias, o.requested);
  const targetKiB = o.requested * 1024;
  const there = (d: LiveVirtioMem) => d.requestedKiB === targetKiB && d.currentKiB === targetKiB;
  if (there(dev)) {
    // The cache may be behind libvirt: another client's resize raises no event
    // for `requested`, and QEMU throttles the size-change events. Read first.
    const fresh = await target.reload();
    if (fresh) {
      vm = fresh;
      dev = checkResize(fresh, alias, o.requested);
    }
    if (there(dev)) {
      o.op('already at the requested size', { requested: o.requested });
      return { alias, requested: o.requested, current: dev.current, memSize: vm.dom.memory };
    }
  }
  o.op('resizing', { from: dev.current, requested: o.requested, timeoutMs: o.timeoutMs, stallMs: o.stallMs });
  // The lifecycle machine tracks the resize (VmStats 'resizing'); the worker's
  // timers end its wait at the deadline or when it stops moving.
  const answer = target.requestResize(alias, {
    requested: o.requested,
    timeoutMs: o.timeoutMs,
    stallMs: o.stallMs,
    onFailure: o.onFailure,
  });
  // Still pending a while later: mark it in metadata, so a restart adopts it.
  const markTimer = setTimeout(() => {
    target.submit({ type: 'mark-due', alias })?.then(
      () => o.op('marked resizing'),
      (err: unknown) => o.op('warning: recording the resize in metadata failed', libvirtDetails(err)),
    );
  }, MARK_AFTER_MS);
  let refused: unknown;
  let s: ResizeSettled;
  try {
    try {
      await client.updateDeviceFlags(vm.ref, resizeXml(dev, o.requested), DomainAffect.LIVE);
      target.submit({ type: 'resize-sent', alias });
    } catch (err) {
      refused = err;
      o.op('update failed', libvirtDetails(err));
      target.submit({ type: 'resize-failed', alias, reason: 'libvirt-error' });
    }
    s = await answer;
  } finally {
    clearTimeout(markTimer);
  }
  const a = s.answer;
  if (a.kind === 'resized') {
    o.op('resized', { current: o.requested, memSize: s.memSize });
    return { alias, requested: o.requested, current: o.requested, memSize: s.memSize };
  }
  if (a.kind === 'failed') {
    if (a.reason === 'vm-gone') {
      o.op('VM gone while resizing');
      throw new VirtError('hotunplug', 'vm-gone', `the VM stopped while ${alias} was resizing`, {
        alias,
        requested: o.requested,
      });
    }
    const why = refused === undefined ? a.reason : errMessage(refused);
    throw new VirtError('hotunplug', a.reason, `libvirt refused the resize: ${why}`, {
      alias,
      requested: o.requested,
      current: dev.current,
      ...(refused === undefined ? {} : libvirtDetails(refused)),
    });
  }
  // The machine settled requested already (onFailure 'settle'), or left it;
  // or libvirt could not be re-read (unconfirmed): the sizes are as last read.
  const { why: reason, current, requestedNow, unconfirmed } = a;
  o.op(`resize ${reason === 'stalled' ? 'stalled' : 'timed out'}`, {
    requested: o.requested,
    current,
    requestedNow,
    ...(unconfirmed ? { unconfirmed } : {}),
  });
  const what =
    reason === 'stalled'
      ? `stopped moving at ${current} MiB`
      : `had reached ${current} MiB at the deadline (${Math.round(o.timeoutMs / 1000)} s)`;
  const now = unconfirmed
    ? `; libvirt could not be re-read, so these are the sizes last read (requested ${requestedNow} MiB) and the ${o.onFailure === 'settle' ? 'settle' : 'size'} is unconfirmed: the end is notified later (late)`
    : `; requested is now ${requestedNow} MiB${o.onFailure === 'keep' ? ' (the guest keeps trying)' : ''}`;
  throw new VirtError(
    'hotunplug',
    reason,
    `virtio-mem ${alias} ${what}, requested ${o.requested} MiB${now}`,
    {
      alias,
      requested: o.requested,
      current,
      requestedNow,
      onFailure: o.onFailure,
      ...(unconfirmed ? { unconfirmed } : {}),
    },
  );
}
