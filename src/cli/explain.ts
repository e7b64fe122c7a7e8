// Turns a daemon error into what an operator needs: what failed, why, and
// what to do about it.

import { ErrorCode, type Reason } from '../api/contract.js';
import type { RpcCallError } from './errors.js';

export const MOVABLE_HINT =
  'the guest must online hot-plugged memory as movable so it can release it: boot the guest kernel with ' +
  '`memhp_default_state=online_movable`, or add a udev rule in the guest ' +
  '(SUBSYSTEM=="memory", ACTION=="add", ATTR{state}=="offline", ATTR{state}="online_movable", then ' +
  '`udevadm control --reload`); `movable_node` alone leaves the memory offline (README: Guest requirements)';

export interface Explained {
  message: string;
  hint?: string;
}

function dataField(e: RpcCallError, key: string): string | undefined {
  const d = e.data;
  if (d && typeof d === 'object' && key in d) {
    const v = (d as Record<string, unknown>)[key];
    return typeof v === 'string' || typeof v === 'number' ? String(v) : undefined;
  }
  return undefined;
}

export function explainRpcError(e: RpcCallError, what: string): Explained {
  const reason = e.reason;
  const message = `${what} failed: ${e.message}${reason && !e.message.includes(reason) ? ` (${reason})` : ''}`;
  switch (e.code) {
    case ErrorCode.NO_SUCH_VM:
      return { message, hint: 'no such VM on this host; list them with: vmhost-client vm list' };
    case ErrorCode.MIGRATING:
      return { message, hint: 'the VM is migrating; retry once the migration has finished' };
    case ErrorCode.INVALID_PARAMS: {
      const field = dataField(e, 'field');
      return {
        message,
        hint: field ? `check the value of ${field}` : 'check the parameters (vmhost-client --help)',
      };
    }
    case ErrorCode.METHOD_NOT_FOUND:
      return { message, hint: 'unknown method; the API is described by: vmhost-client rpc discover' };
    case ErrorCode.SERVER_BUSY:
      return { message, hint: 'the daemon is busy or shutting down; retry in a moment' };
    case ErrorCode.UNEXPECTED: {
      const id = dataField(e, 'correlationId') ?? dataField(e, 'id');
      return {
        message,
        hint: `unexpected daemon error; see its log${id ? ` for correlation id ${id}` : ''} (journalctl -u vmhostd)`,
      };
    }
  }
  const hint = reason === undefined ? undefined : hintForReason(reason);
  return hint === undefined ? { message } : { message, hint };
}

/** What to do about a failure `reason` (docs/design.md, "Errors": `data.reason`). */
export function hintForReason(reason: string): string | undefined {
  return Object.hasOwn(HINTS, reason) ? HINTS[reason as Reason] : undefined;
}

/** One hint per reason of the contract: a reason added there without a hint here fails the compile. */
const HINTS: Record<Reason, string> = {
  'guest-rejected': `the guest refused to release the memory; ${MOVABLE_HINT}`,
  'not-movable':
    'the guest agent says the guest holds this memory in ZONE_NORMAL (kernel memory), so it would refuse the ' +
    'unplug; nothing was changed. Check /sys/devices/system/memory/memoryN/valid_zones in the guest; ' +
    `${MOVABLE_HINT} (DIMMs plugged before the change stay as they are). --force tries anyway`,
  timeout:
    'the guest did not release the DIMM in time. The removal stays requested: if the guest releases it ' +
    'later the daemon notices (watch: vmhost-client events). A guest that never answers usually has the ' +
    `memory onlined as non-movable; ${MOVABLE_HINT}`,
  'already-unplugging':
    'an unplug of this DIMM is already pending; watch it with: vmhost-client events (or vm show)',
  'not-hotplugged':
    'only DIMMs hot-plugged while the VM runs can be removed; DIMMs present at boot are not movable',
  'device-not-found': 'no DIMM with that alias; see the aliases with: vmhost-client vm show VM',
  'not-running': 'the VM is not running; memory hot plug and unplug need a running VM',
  'vm-gone': 'the VM stopped while the operation was in progress',
  'no-free-slot': 'every memory slot is used (<maxMemory slots=...> in the domain XML); unplug a DIMM first',
  'libvirt-error': "libvirt refused the request; the daemon log has libvirt's code and message",
  'no-suitable-device':
    'no hot-plugged DIMM fits the requested decrease (each is larger than it, or all are being unplugged); ' +
    'see them with: vmhost-client vm show VM',
  'below-minimum':
    'base memory and the DIMMs present at boot can never be removed, so the VM cannot go below the ' +
    'minimum named above; check the unit of the size (MiB or GiB?); see the DIMMs with: vmhost-client vm show VM',
  stalled:
    'the virtio-mem device stopped moving short of the requested size: the guest cannot give back blocks ' +
    `holding unmovable pages (the error data has the current size reached); ${MOVABLE_HINT}`,
  'no-such-vm': 'no such VM on this host; list them with: vmhost-client vm list',
  migrating: 'the VM is migrating; retry once the migration has finished',
};
