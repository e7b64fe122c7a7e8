// Hot unplug of one DIMM (docs/design.md, "Operations" and "Device
// lifecycle"): request it through the VM's worker (which marks it in
// metadata), detach LIVE once the mark is durable, turn what libvirt says
// into events for the lifecycle machine, and answer with what the machine
// decided. The operation never writes the VM's record itself.

import { LibvirtConnectionError, LibvirtError, LibvirtNotConnectedError } from '../libvirt/errors.js';
import { DomainAffect, type LibvirtApi } from '../libvirt/types.js';
import { checkGuaranteed } from './checks.js';
import type { DeviceEvent } from './device-lifecycle.js';
import { buildDetachDimmXml } from './dimm-xml.js';
import type { ParsedDimm } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import {
  errMessage,
  isNoDomain,
  isQemuGoingAway,
  isRejectedByGuest,
  libvirtDetails,
} from './libvirt-errors.js';
import { nextRunInStep, updateNextRun } from './next-run.js';
import { observeDimm } from './observer.js';
import type { OpContext, OpLog } from './op-context.js';
import { isActive } from './status.js';
import type { VmRecord } from './vm-record.js';
import type { Settled, UnplugRequest, VmWorker } from './vm-worker.js';

/**
 * How long an unplug whose detach lost the libvirt connection waits for the
 * reconnect (whose resync may show the DIMM gone) before failing clearly.
 */
const RECONNECT_GRACE_MS = 5_000;

/** How long a detach that failed because QEMU went away waits for the stop event. */
const STOP_GRACE_MS = 3_000;

/**
 * How long an unplug that needed no mark before its detach may stay
 * unmarked: a guest that releases the DIMM sooner (the usual case, tens of
 * ms) costs no metadata write before the answer. If the daemon dies within
 * this time and the guest never releases, a restart shows the DIMM plugged.
 */
export const MARK_AFTER_MS = 1_000;

type Dimm = ParsedDimm & { alias: string };

export interface UnplugOptions {
  guaranteed: number | undefined;
  timeoutMs: number;
  nextRun: boolean;
  op: OpLog;
}

/** What went wrong on the call's side, for the error it answers with. */
interface CallErrors {
  mark?: unknown;
  detach?: unknown;
}

/** Runs as one of the VM's operations; its outcome and duration go to the observer. */
export function unplugOne(
  ctx: OpContext,
  w: VmWorker,
  dimm: Dimm,
  o: UnplugOptions,
): Promise<{ memSize: number; memGuaranteedSize: number }> {
  const report = (outcome: string, durationMs: number) =>
    ctx.observer.unplugFinished({ vmId: w.uuid, alias: dimm.alias, outcome, durationMs });
  return observeDimm(report, 'removed', () => unplugDimm(ctx, w, dimm, o));
}

async function unplugDimm(
  ctx: OpContext,
  w: VmWorker,
  dimm: Dimm,
  o: UnplugOptions,
): Promise<{ memSize: number; memGuaranteedSize: number }> {
  const vm = w.require();
  checkUnplugOptions(vm, dimm, o);
  const nextRunMatch = o.nextRun && nextRunInStep(vm);
  const errors: CallErrors = {};
  const req = w.requestUnplug(dimm.alias, o.guaranteed);
  if (await markDurable(ctx, w, dimm.alias, req, errors, o.op)) {
    await detachAndWait(ctx, w, dimm, req, errors, o);
  }
  const settled = await req.answer;
  if (settled.answer.kind !== 'removed') throw unplugError(dimm.alias, settled, errors, o);
  if (nextRunMatch) await shrinkNextRun(ctx, w, dimm, o.op);
  o.op('removed', { memSize: settled.memSize, memGuaranteedSize: settled.memGuaranteedSize });
  return { memSize: settled.memSize, memGuaranteedSize: settled.memGuaranteedSize };
}

function checkUnplugOptions(vm: Readonly<VmRecord>, dimm: Dimm, o: UnplugOptions): void {
  if (o.guaranteed !== undefined)
    checkGuaranteed(o.guaranteed, vm.dom.memory - dimm.size, 'memGuaranteedSize');
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) {
    throw invalid('timeout', '> 0', 'timeout must be positive');
  }
  if (vm.dom.balloonActive) {
    o.op('warning: the VM has an active memory balloon; hot unplug with ballooning is not recommended');
  }
}

/** Waits for the mark's metadata write; false (and the call answered) when it failed or the VM stopped. */
async function markDurable(
  ctx: OpContext,
  w: VmWorker,
  alias: string,
  req: UnplugRequest,
  errors: CallErrors,
  op: OpLog,
): Promise<boolean> {
  const first = await Promise.race([
    req.marked.then(
      () => 'marked' as const,
      (err: unknown) => ({ err }),
    ),
    req.answer.then(() => 'answered' as const),
  ]);
  if (first === 'answered') return false;
  if (first === 'marked') {
    if (!req.recorded) op('marked unplugging');
    return true;
  }
  errors.mark = first.err;
  op('recording the unplug in metadata failed', libvirtDetails(first.err));
  const gone = !(await stillActive(ctx.client, w));
  w.submit({ type: 'mark-failed', alias, reason: gone ? 'vm-gone' : 'libvirt-error' });
  return false;
}

/** Detaches, and feeds the detach's result and the call's timeout to the machine until it answers. */
async function detachAndWait(
  ctx: OpContext,
  w: VmWorker,
  dimm: Dimm,
  req: UnplugRequest,
  errors: CallErrors,
  o: UnplugOptions,
): Promise<void> {
  const { alias } = dimm;
  const timer = setTimeout(() => w.submit({ type: 'call-gave-up', alias, why: 'timeout' }), o.timeoutMs);
  // Still pending a while later: mark it, so a restart shows it unplugging.
  const markTimer = req.recorded
    ? setTimeout(() => w.submit({ type: 'mark-due', alias }), MARK_AFTER_MS)
    : undefined;
  try {
    const ref = w.record?.ref;
    if (!ref) return; // gone: the machine has answered vm-gone
    const detach = ctx.client.detachDeviceFlags(ref, detachXml(dimm), DomainAffect.LIVE).then(
      () => null,
      (err: unknown) => ({ err }),
    );
    reportRelease(ctx, w, alias, req.answer);
    // Logged, and shown as unplugging (a VM_status), once the call has left:
    // calls of one tick are written on the next tick (connection.ts), so a
    // watcher acting on this line finds it sent, and building and sending
    // the VM_status does not hold the detach back (0.8 ms on the real guest).
    process.nextTick(() => {
      o.op('detach requested');
      w.submit({ type: 'detach-requested', alias });
    });
    const first = await Promise.race([detach, req.answer.then(() => 'answered' as const)]);
    if (first === 'answered') return;
    if (first === null) {
      o.op('detach accepted, waiting for the guest');
      // libvirt answers the detach once the guest released the DIMM, or after
      // its own wait (5 s in libvirt 9): then the removal stays pending.
      w.submit({ type: 'mark-due', alias });
      return;
    }
    errors.detach = first.err;
    const event = await classifyDetachFailure(ctx, w, alias, first.err, req, o.op);
    if (event) w.submit(event);
  } finally {
    void req.answer.finally(() => {
      clearTimeout(timer);
      clearTimeout(markTimer);
    });
  }
}

/** Detach sent -> the removal confirmed: the guest's share of the unplug, for the observer. */
function reportRelease(ctx: OpContext, w: VmWorker, alias: string, answer: Promise<Settled>): void {
  const sent = performance.now();
  void answer.then((s) => {
    if (s.answer.kind === 'removed') {
      ctx.observer.guestReleased({ vmId: w.uuid, alias, durationMs: performance.now() - sent });
    }
  });
}

function detachXml(dimm: Dimm): string {
  return buildDetachDimmXml({
    sizeMiB: dimm.size,
    node: dimm.node,
    alias: dimm.alias,
    ...(dimm.slot !== null ? { slot: dimm.slot } : {}),
    ...(dimm.base !== null ? { base: dimm.base } : {}),
  });
}

/** What a failed detach means, once the VM's events have had their chance; null when they answered. */
async function classifyDetachFailure(
  ctx: OpContext,
  w: VmWorker,
  alias: string,
  err: unknown,
  req: UnplugRequest,
  op: OpLog,
): Promise<DeviceEvent | null> {
  const answered = req.answer;
  op('detach failed', libvirtDetails(err));
  // libvirt 9 fails the detach itself when the guest rejects (and also sends
  // device-removal-failed).
  if (isRejectedByGuest(err)) return { type: 'detach-failed', alias, reason: 'guest-rejected' };
  // The request may have gone through before the connection dropped; the
  // resync after reconnecting answers if the DIMM is gone.
  // Refused before it was sent (no connection): libvirt never saw the detach.
  if (err instanceof LibvirtNotConnectedError)
    return { type: 'detach-failed', alias, reason: 'libvirt-error' };
  if (err instanceof LibvirtConnectionError) {
    if (await answeredWithin(answered, RECONNECT_GRACE_MS)) return null;
    // No mark was written and nothing says libvirt acted on the detach: taken
    // as not sent, as when the lost call was the mark (the DIMM stays plugged).
    if (req.recorded) return { type: 'detach-failed', alias, reason: 'libvirt-error' };
    // Still cut off: say so now rather than at the timeout.
    return ctx.client.connected ? null : { type: 'call-gave-up', alias, why: 'disconnected' };
  }
  if (err instanceof LibvirtError) {
    // A VM stopping under the detach makes it fail with whatever libvirt says.
    if (!(await stillActive(ctx.client, w))) return { type: 'detach-failed', alias, reason: 'vm-gone' };
    // QEMU dying fails the detach a moment before libvirt reports the stop:
    // give the lifecycle event a short while.
    if (isQemuGoingAway(err)) {
      if (await answeredWithin(answered, STOP_GRACE_MS)) return null;
      if (!(await stillActive(ctx.client, w))) return { type: 'detach-failed', alias, reason: 'vm-gone' };
    }
  }
  return { type: 'detach-failed', alias, reason: 'libvirt-error' };
}

async function answeredWithin(answered: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<false>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  const r = await Promise.race([answered.then(() => true), grace]);
  clearTimeout(timer);
  return r;
}

/** The error a call answers with when the DIMM was not removed (yet). */
function unplugError(alias: string, s: Settled, errors: CallErrors, o: UnplugOptions): VirtError {
  const a = s.answer;
  if (a.kind === 'pending') {
    if (a.why === 'timeout') {
      o.op('timed out, removal stays requested', { timeoutMs: o.timeoutMs });
      return new VirtError(
        'hotunplug',
        'timeout',
        `the guest did not release ${alias} within ${o.timeoutMs} ms; the removal stays requested`,
        { alias, timeoutMs: o.timeoutMs },
      );
    }
    o.op('failed: libvirt connection lost, removal stays requested', libvirtDetails(errors.detach));
    return new VirtError(
      'hotunplug',
      'libvirt-error',
      `lost the connection to libvirt while unplugging ${alias}; the removal may still complete: the DIMM stays unplugging and a late device_removed follows if the guest releases it`,
      { alias, ...libvirtDetails(errors.detach) },
    );
  }
  if (a.kind === 'removed') throw new Error('unreachable: removed is not an error');
  const reason = a.reason;
  const cause = errors.mark ?? errors.detach;
  const details = reason === 'libvirt-error' ? libvirtDetails(cause) : {};
  o.op(`failed: ${reason}`, details);
  const message =
    reason === 'guest-rejected'
      ? `the guest rejected the unplug of ${alias}`
      : reason === 'vm-gone'
        ? `the VM stopped while unplugging ${alias}`
        : reason === 'already-unplugging'
          ? `DIMM ${alias} is already being unplugged`
          : reason === 'device-not-found'
            ? `the VM has no DIMM ${alias}`
            : errors.mark !== undefined
              ? `cannot record the unplug: ${errMessage(errors.mark)}`
              : `detach of ${alias} failed: ${errMessage(errors.detach)}`;
  return new VirtError('hotunplug', reason, message, { alias, ...details });
}

/** The next-run definition loses the DIMM's memory too (its memory matched the live one). */
async function shrinkNextRun(ctx: OpContext, w: VmWorker, dimm: Dimm, op: OpLog): Promise<void> {
  const vm = w.record;
  if (!vm || vm.inactiveMemoryKiB === null) return;
  const r = await updateNextRun(
    ctx.client,
    vm,
    vm.inactiveMemoryKiB - dimm.sizeKiB,
    new Map([[dimm.node, -dimm.sizeKiB]]),
    null,
    op,
  );
  if (r) w.nextRunUpdated(r.inactiveMemoryKiB, r.nextRunGuaranteed);
}

async function stillActive(client: LibvirtApi, w: VmWorker): Promise<boolean> {
  const vm = w.record;
  if (!vm) return false;
  try {
    return isActive(await client.getState(vm.ref));
  } catch (err) {
    return !isNoDomain(err);
  }
}
