// Turns a daemon error into what an operator needs: what failed, why, and
// what to do about it.

import type { RpcCallError } from './errors.js';

export const MOVABLE_HINT =
  'the guest must online hot-plugged memory as movable so it can release it: boot the guest kernel with ' +
  '`memhp_default_state=online_movable` (or `movable_node`), or add a udev rule in the guest: ' +
  'SUBSYSTEM=="memory", ACTION=="add", ATTR{state}=="offline", ATTR{state}="online_movable"';

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
    case 1:
      return { message, hint: 'no such VM on this host; list them with: vmhost-client vm list' };
    case 51:
      return { message, hint: 'the VM is migrating; retry once the migration has finished' };
    case -32602: {
      const field = dataField(e, 'field');
      return {
        message,
        hint: field ? `check the value of ${field}` : 'check the parameters (vmhost-client --help)',
      };
    }
    case -32601:
      return { message, hint: 'unknown method; the API is described by: vmhost-client rpc discover' };
    case -32000:
      return { message, hint: 'the daemon is busy or shutting down; retry in a moment' };
    case 100: {
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
  switch (reason) {
    case 'guest-rejected':
      return `the guest refused to release the memory; ${MOVABLE_HINT}`;
    case 'timeout':
      return (
        'the guest did not release the DIMM in time. The removal stays requested: if the guest releases it ' +
        'later the daemon notices (watch: vmhost-client events). A guest that never answers usually has the ' +
        `memory onlined as non-movable; ${MOVABLE_HINT}`
      );
    case 'already-unplugging':
      return 'an unplug of this DIMM is already pending; watch it with: vmhost-client events (or vm show)';
    case 'not-hotplugged':
      return 'only DIMMs hot-plugged while the VM runs can be removed; DIMMs present at boot are not movable';
    case 'device-not-found':
      return 'no DIMM with that alias; see the aliases with: vmhost-client vm show VM';
    case 'not-running':
      return 'the VM is not running; memory hot plug and unplug need a running VM';
    case 'vm-gone':
      return 'the VM stopped while the operation was in progress';
    case 'no-free-slot':
      return 'every memory slot is used (<maxMemory slots=...> in the domain XML); unplug a DIMM first';
    case 'libvirt-error':
      return "libvirt refused the request; the daemon log has libvirt's code and message";
    default:
      return undefined;
  }
}
