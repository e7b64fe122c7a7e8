// State of the "VM Devices" view, kept apart from the DOM so it can be tested:
// VmStats by vmId, plus per-DIMM notes (removal in progress, failed, …).
// Plain ES module, no build step.

/** @typedef {{alias: string, size: number, node: number, slot: number, base: string, state: string}} Dimm */
/** @typedef {{vmId: string, vmName: string, status: string, memSize: number, memGuaranteedSize: number, hash: string, balloonActive: boolean, memoryDevices: Dimm[]}} VmStats */
/** @typedef {{kind: 'busy'|'ok'|'error', text: string, hint?: string}} Note */

export const MOVABLE_HINT =
  'The guest must online hot-plugged memory as movable: boot it with memhp_default_state=online_movable, ' +
  'or use a udev rule that writes online_movable (then udevadm control --reload); movable_node alone leaves it offline.';

const REASON_HINTS = {
  'guest-rejected': MOVABLE_HINT,
  'not-movable': `The guest holds this DIMM in ZONE_NORMAL (kernel memory) and would refuse; nothing was changed. ${MOVABLE_HINT}`,
  timeout:
    'The removal stays requested: if the guest releases the DIMM later, this page updates. ' +
    'A guest that never answers usually has the memory onlined as non-movable.',
  'already-unplugging': 'An unplug of this DIMM is already pending.',
  'not-hotplugged': 'Only DIMMs hot-plugged while the VM runs can be removed.',
  'not-running': 'The VM is not running.',
  'vm-gone': 'The VM stopped during the unplug.',
};

export function hintFor(reason) {
  return typeof reason === 'string' && Object.hasOwn(REASON_HINTS, reason) ? REASON_HINTS[reason] : undefined;
}

export function createState() {
  return { vms: new Map(), notes: new Map() };
}

export function noteKey(vmId, alias) {
  return `${vmId}\u0000${alias}`;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Accepts only well-formed VmStats (the page never trusts shapes blindly). */
export function cleanStats(v) {
  if (!isObject(v) || typeof v.vmId !== 'string') return null;
  const devices = Array.isArray(v.memoryDevices) ? v.memoryDevices.filter(isObject) : [];
  return {
    vmId: v.vmId,
    vmName: typeof v.vmName === 'string' ? v.vmName : v.vmId,
    status: typeof v.status === 'string' ? v.status : '?',
    memSize: Number(v.memSize),
    memGuaranteedSize: Number(v.memGuaranteedSize),
    hash: typeof v.hash === 'string' ? v.hash : '',
    balloonActive: v.balloonActive === true,
    memoryDevices: devices.map((d) => ({
      model: d.model === 'virtio-mem' ? 'virtio-mem' : 'dimm',
      alias: String(d.alias ?? ''),
      size: Number(d.size),
      node: Number(d.node),
      slot: Number(d.slot),
      base: String(d.base ?? ''),
      state: String(d.state ?? ''),
      requested: Number(d.requested),
      current: Number(d.current),
      block: Number(d.block),
      guestZone: isObject(d.guest) && typeof d.guest.zone === 'string' ? d.guest.zone : '',
      guestOnline: isObject(d.guest) && d.guest.online === true,
    })),
  };
}

/**
 * The zone the guest holds a DIMM in, as the agent said ('-' from a daemon
 * that does not say), and whether an unplug would be refused as not movable.
 */
export function zoneOf(d) {
  const zone = typeof d.guestZone === 'string' && d.guestZone ? d.guestZone : '-';
  const partly = !d.guestOnline && !['offline', 'unknown', '-'].includes(zone);
  return {
    text: partly ? `${zone} (partly offline)` : zone,
    notMovable: zone === 'normal' || zone === 'mixed',
  };
}

export function setAll(state, list) {
  state.vms.clear();
  for (const v of Array.isArray(list) ? list : []) {
    const s = cleanStats(v);
    if (s) state.vms.set(s.vmId, s);
  }
}

/** Applies one JSON-RPC notification; returns a line for the event log, or null. */
export function applyNotification(state, method, params) {
  const m = /^\|virt\|([^|]+)\|(.+)$/.exec(String(method));
  if (!m) return null;
  const [, kind, vmId] = m;
  const p = isObject(params) ? params : {};
  const vm = state.vms.get(vmId);
  const name = vm ? vm.vmName : vmId;
  switch (kind) {
    case 'VM_status': {
      // VDSM's shape: {"<vmId>": stats, notify_time}.
      const inner = isObject(p[vmId]) ? p[vmId] : p;
      const s = cleanStats({ ...inner, vmId });
      if (!s) return null;
      state.vms.set(vmId, s);
      return `${name}: status ${s.status}, memory ${s.memSize} MiB`;
    }
    case 'device_removed': {
      const alias = String(p.alias ?? '');
      if (vm) {
        vm.memoryDevices = vm.memoryDevices.filter((d) => d.alias !== alias);
        if (Number.isFinite(Number(p.memSize))) vm.memSize = Number(p.memSize);
      }
      state.notes.set(noteKey(vmId, alias), {
        kind: 'ok',
        text: p.late === true ? 'removed (after the call had timed out)' : 'removed',
      });
      return `${name}: DIMM ${alias} removed${p.late === true ? ' (late)' : ''}`;
    }
    case 'memory_device_size_changed': {
      const alias = String(p.alias ?? '');
      const dev = vm?.memoryDevices.find((d) => d.alias === alias && d.model === 'virtio-mem');
      if (dev) {
        if (Number.isFinite(Number(p.requested))) dev.requested = Number(p.requested);
        if (Number.isFinite(Number(p.current))) dev.current = Number(p.current);
        dev.state = dev.current === dev.requested ? 'plugged' : 'resizing';
      }
      return `${name}: virtio-mem ${alias} at ${formatMiB(Number(p.current))} of ${formatMiB(Number(p.requested))}`;
    }
    case 'memory_device_resize_failed': {
      const alias = String(p.alias ?? '');
      const reason = String(p.reason ?? 'unknown');
      state.notes.set(noteKey(vmId, alias), {
        kind: 'error',
        text: `resize ${reason} at ${formatMiB(Number(p.current))} of ${formatMiB(Number(p.requested))}`,
      });
      return `${name}: virtio-mem ${alias} stopped at ${formatMiB(Number(p.current))} (${reason})`;
    }
    case 'device_removal_failed': {
      const alias = String(p.alias ?? '');
      const reason = String(p.reason ?? 'unknown');
      const note = { kind: 'error', text: `removal failed: ${reason}` };
      const hint = hintFor(reason);
      if (hint) note.hint = hint;
      state.notes.set(noteKey(vmId, alias), note);
      return `${name}: removal of ${alias} failed (${reason})`;
    }
    default:
      return null;
  }
}

/**
 * The params of VM.resizeMemoryDevice, or an error message for a size the
 * device cannot take (a whole number of MiB, 0..size, a multiple of block).
 */
export function resizeRequest(vmId, dev, text) {
  const mib = Number(String(text).trim());
  if (!Number.isInteger(mib) || mib < 0) return { error: 'enter a whole number of MiB' };
  if (mib > dev.size) return { error: `at most ${dev.size} MiB` };
  if (Number.isFinite(dev.block) && dev.block > 0 && mib % dev.block !== 0) {
    return { error: `a multiple of ${dev.block} MiB` };
  }
  return { params: { vmID: vmId, alias: dev.alias, requested: mib } };
}

/** The params of VM.hotunplugMemory for one DIMM. */
export function unplugRequest(vmId, dimm) {
  return { vmID: vmId, params: { vmId, memory: { size: dimm.size, node: dimm.node, alias: dimm.alias } } };
}

export function canRemove(vm, dimm) {
  return vm.status === 'Up' && dimm.state === 'plugged';
}

export function formatMiB(n) {
  return Number.isFinite(n) ? `${n} MiB` : '-';
}

/** The page's WebSocket URL: same host, ws or wss to match the page. */
export function socketUrl(location) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/jsonrpc`;
}
