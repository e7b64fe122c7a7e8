// Hot unplug of one DIMM (DESIGN section 4): mark it in metadata, register
// interest, detach LIVE, then wait for the guest's answer, the VM's stop or
// the timeout, and classify a failed detach.

import { LibvirtConnectionError, LibvirtError } from '../libvirt/errors.js';
import { DomainAffect, type LibvirtApi } from '../libvirt/types.js';
import { checkGuaranteed } from './checks.js';
import type { RemovalOutcome } from './device-waiters.js';
import { buildDetachDimmXml } from './dimm-xml.js';
import type { ParsedDimm } from './domain-xml.js';
import { invalid, VirtError } from './errors.js';
import { errMessage, isNoDomain, libvirtDetails } from './libvirt-errors.js';
import { updateNextRun } from './next-run.js';
import type { OpContext, OpLog } from './op-context.js';
import { isActive } from './status.js';
import type { VmRecord } from './vm-record.js';

type WaitOutcome =
  | RemovalOutcome
  | { kind: 'timeout' }
  | { kind: 'libvirt-error'; err: unknown }
  | { kind: 'disconnected'; err: unknown };

/**
 * How long an unplug whose detach lost the libvirt connection waits for the
 * reconnect (whose resync may show the DIMM gone) before failing clearly.
 */
const RECONNECT_GRACE_MS = 5_000;

/** How long a detach that failed because QEMU went away waits for the stop event. */
const STOP_GRACE_MS = 3_000;

/** Runs inside the VM's serial worker. */
export async function unplugOne(
  ctx: OpContext,
  vm: VmRecord,
  dimm: ParsedDimm & { alias: string },
  o: { guaranteed: number | undefined; timeoutMs: number; nextRun: boolean; op: OpLog },
): Promise<{ memSize: number; memGuaranteedSize: number }> {
  const { client, registry, waiters, events } = ctx;
  const { alias } = dimm;
  const { op } = o;
  if (o.guaranteed !== undefined)
    checkGuaranteed(o.guaranteed, vm.dom.memory - dimm.size, 'memGuaranteedSize');
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) {
    throw invalid('timeout', '> 0', 'timeout must be positive');
  }
  if (vm.dom.balloonActive) {
    op('warning: the VM has an active memory balloon; hot unplug with ballooning is not recommended');
  }
  const liveKiBBefore = vm.dom.memoryKiB;
  const nextRunMatch = o.nextRun && vm.persistent && vm.inactiveMemoryKiB === liveKiBBefore;
  const xml = buildDetachDimmXml({
    sizeMiB: dimm.size,
    node: dimm.node,
    alias,
    ...(dimm.slot !== null ? { slot: dimm.slot } : {}),
    ...(dimm.base !== null ? { base: dimm.base } : {}),
  });

  vm.inFlight.add(alias);
  vm.meta.unplugging.push({ alias, since: new Date().toISOString() });
  const unmark = (): void => {
    vm.meta.unplugging = vm.meta.unplugging.filter((u) => u.alias !== alias);
  };
  try {
    await registry.persistMeta(vm);
  } catch (err) {
    unmark();
    vm.inFlight.delete(alias);
    registry.publish(vm);
    op('recording the unplug in metadata failed', libvirtDetails(err));
    if (!(await stillActive(client, vm))) {
      throw new VirtError('hotunplug', 'vm-gone', `the VM stopped while unplugging ${alias}`, { alias });
    }
    throw new VirtError('hotunplug', 'libvirt-error', `cannot record the unplug: ${errMessage(err)}`, {
      alias,
      ...libvirtDetails(err),
    });
  }
  op('marked unplugging');

  // Interest first: libvirt may send the event before the detach reply.
  const waiter = waiters.wait(vm.uuid, alias);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<WaitOutcome>((r) => {
    timer = setTimeout(() => r({ kind: 'timeout' }), o.timeoutMs);
  });
  let outcome: WaitOutcome;
  try {
    const detach = client.detachDeviceFlags(vm.ref, xml, DomainAffect.LIVE).then(
      () => ({ kind: 'detached' as const }),
      (err: unknown) => ({ kind: 'detach-failed' as const, err }),
    );
    op('detach requested');
    // Shown as unplugging now that the mark is durable; published once the
    // detach is on its way, to keep the notification off the critical path.
    registry.publish(vm);
    const first = await Promise.race([waiter.promise, timeout, detach]);
    if (first.kind === 'detached') {
      op('detach accepted, waiting for the guest');
      outcome = await Promise.race([waiter.promise, timeout]);
    } else if (first.kind === 'detach-failed') {
      outcome = await classifyDetachFailure(ctx, vm, alias, first.err, waiter.promise, timeout, op);
    } else {
      outcome = first;
    }
  } finally {
    clearTimeout(timer);
    waiter.cancel();
  }

  const current = registry.get(vm.uuid);
  switch (outcome.kind) {
    case 'removed': {
      // The event's re-read of the live XML started after the removal: it confirms it.
      const reread = outcome.refreshed
        ? outcome.refreshed.then(
            () => registry.get(vm.uuid),
            () => registry.refresh(vm.ref),
          )
        : registry.refresh(vm.ref);
      let after: VmRecord;
      try {
        after = (await reread) ?? current ?? vm;
      } catch (err) {
        // Released, but unconfirmed: the mark stays so the next reload of the
        // VM reports the removal (late: true). The alias must not stay in
        // flight, or that reload would skip the mark for the VM's lifetime.
        vm.inFlight.delete(alias);
        op('failed: re-reading the VM after the removal failed', libvirtDetails(err));
        throw new VirtError(
          'hotunplug',
          'libvirt-error',
          `the guest released ${alias} but re-reading the VM failed: ${errMessage(err)}; a late device_removed follows once libvirt answers`,
          { alias, ...libvirtDetails(err) },
        );
      }
      unmark();
      after.meta.unplugging = after.meta.unplugging.filter((u) => u.alias !== alias);
      const memSize = after.dom.memory;
      const g = o.guaranteed ?? after.meta.guaranteedMiB ?? memSize;
      after.meta.guaranteedMiB = Math.min(g, memSize);
      // Clearing the mark is off the reply's path: the removal is already
      // confirmed by libvirt, and if we died before the write landed the
      // restart would only report the removal once more (late: true).
      // Writes to one domain's metadata stay ordered (persistMeta chains them).
      void registry
        .persistMeta(after)
        .catch((err: unknown) => op('metadata update failed', libvirtDetails(err)));
      if (nextRunMatch && after.inactiveMemoryKiB !== null) {
        await updateNextRun(
          client,
          after,
          after.inactiveMemoryKiB - dimm.sizeKiB,
          new Map([[dimm.node, -dimm.sizeKiB]]),
          null,
          op,
        );
      }
      after.inFlight.delete(alias);
      vm.inFlight.delete(alias);
      registry.publish(after);
      op('removed', { memSize, memGuaranteedSize: after.stats.memGuaranteedSize });
      events.emit('deviceRemoved', vm.uuid, { alias, memSize, late: false });
      return { memSize, memGuaranteedSize: after.stats.memGuaranteedSize };
    }
    case 'disconnected': {
      // The request may have reached the guest: like a timeout, the removal
      // stays requested and a later release is reported (late: true).
      vm.inFlight.delete(alias);
      registry.publish(current ?? vm);
      op('failed: libvirt connection lost, removal stays requested', libvirtDetails(outcome.err));
      throw new VirtError(
        'hotunplug',
        'libvirt-error',
        `lost the connection to libvirt while unplugging ${alias}; the removal may still complete: the DIMM stays unplugging and a late device_removed follows if the guest releases it`,
        { alias, ...libvirtDetails(outcome.err) },
      );
    }
    case 'timeout': {
      // The removal stays requested: the mark stays, and a later
      // device-removed event finishes the bookkeeping (late: true).
      vm.inFlight.delete(alias);
      registry.publish(current ?? vm);
      op('timed out, removal stays requested', { timeoutMs: o.timeoutMs });
      throw new VirtError(
        'hotunplug',
        'timeout',
        `the guest did not release ${alias} within ${o.timeoutMs} ms; the removal stays requested`,
        { alias, timeoutMs: o.timeoutMs },
      );
    }
    default: {
      const reason = outcome.kind === 'rejected' ? 'guest-rejected' : outcome.kind;
      unmark();
      vm.inFlight.delete(alias);
      const still = registry.get(vm.uuid);
      if (still?.active) {
        await registry
          .persistMeta(still)
          .catch((err: unknown) => op('metadata update failed', libvirtDetails(err)));
        registry.publish(still);
      }
      const details = outcome.kind === 'libvirt-error' ? libvirtDetails(outcome.err) : {};
      op(`failed: ${reason}`, details);
      events.emit('deviceRemovalFailed', vm.uuid, { alias, reason });
      const message =
        reason === 'guest-rejected'
          ? `the guest rejected the unplug of ${alias}`
          : reason === 'vm-gone'
            ? `the VM stopped while unplugging ${alias}`
            : `detach of ${alias} failed: ${errMessage(outcome.kind === 'libvirt-error' ? outcome.err : '')}`;
      throw new VirtError('hotunplug', reason, message, { alias, ...details });
    }
  }
}

async function classifyDetachFailure(
  ctx: OpContext,
  vm: VmRecord,
  alias: string,
  err: unknown,
  waiter: Promise<RemovalOutcome>,
  timeout: Promise<WaitOutcome>,
  op: OpLog,
): Promise<WaitOutcome> {
  op('detach failed', libvirtDetails(err));
  // The event may have settled the waiter already; it is the better answer.
  if (!ctx.waiters.has(vm.uuid, alias)) return waiter;
  // libvirt 9 fails the detach itself when the guest rejects (and also sends
  // device-removal-failed).
  if (err instanceof Error && /rejected by the guest/i.test(err.message)) return { kind: 'rejected' };
  // The request may have gone through before the connection dropped; the
  // resync after reconnecting settles the waiter if the DIMM is gone.
  if (err instanceof LibvirtConnectionError) {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<null>((r) => {
      timer = setTimeout(() => r(null), RECONNECT_GRACE_MS);
    });
    const settled = await Promise.race([waiter, timeout, grace]);
    clearTimeout(timer);
    if (settled) return settled;
    // Still cut off: say so now rather than at the timeout.
    if (!ctx.client.connected) return { kind: 'disconnected', err };
    return Promise.race([waiter, timeout]);
  }
  // A VM stopping under the detach makes it fail with whatever libvirt says.
  if (err instanceof LibvirtError) {
    if (!(await stillActive(ctx.client, vm))) return { kind: 'vm-gone' };
    // QEMU dying fails the detach ("End of file from qemu monitor") a moment
    // before libvirt reports the stop: give the lifecycle event a short while.
    if (/qemu monitor|not running/i.test(err.message)) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<null>((r) => {
        timer = setTimeout(() => r(null), STOP_GRACE_MS);
      });
      const settled = await Promise.race([waiter, grace]);
      clearTimeout(timer);
      if (settled) return settled;
      if (!(await stillActive(ctx.client, vm))) return { kind: 'vm-gone' };
    }
  }
  return { kind: 'libvirt-error', err };
}

async function stillActive(client: LibvirtApi, vm: VmRecord): Promise<boolean> {
  try {
    return isActive(await client.getState(vm.ref));
  } catch (err) {
    return !isNoDomain(err);
  }
}
