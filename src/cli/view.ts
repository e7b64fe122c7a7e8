// Reads the daemon's results defensively (the CLI may face another daemon
// version) and renders them as the human tables and lines of vmhost-client.

import { formatMiB } from './size.js';
import { renderFields, renderTable } from './table.js';

export interface Dimm {
  /** 'dimm' or 'virtio-mem' ('dimm' from a daemon that does not say). */
  model: string;
  alias: string;
  size: number;
  node: number;
  slot: number;
  base: string;
  state: string;
  /** virtio-mem only (MiB). */
  requested: number;
  current: number;
  block: number;
  /** DIMM: the zone its guest holds it in ('' from a daemon that does not say). */
  guestZone: string;
  guestOnline: boolean;
}

export interface VmStats {
  vmId: string;
  vmName: string;
  status: string;
  memSize: number;
  memGuaranteedSize: number;
  hash: string;
  balloonActive: boolean;
  memoryDevices: Dimm[];
}

export interface VmListEntry {
  vmId: string;
  vmName: string;
  status: string;
}

function rec(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
function s(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}
function n(v: unknown): number {
  return typeof v === 'number' ? v : Number.NaN;
}

export function toDimm(v: unknown): Dimm {
  const o = rec(v);
  return {
    alias: s(o.alias),
    size: n(o.size),
    node: n(o.node),
    slot: n(o.slot),
    base: s(o.base),
    state: s(o.state),
    model: o.model === undefined ? 'dimm' : s(o.model),
    requested: n(o.requested),
    current: n(o.current),
    block: n(o.block),
    guestZone: s(rec(o.guest).zone),
    guestOnline: rec(o.guest).online === true,
  };
}

export function toVmStats(v: unknown): VmStats {
  const o = rec(v);
  return {
    vmId: s(o.vmId),
    vmName: s(o.vmName),
    status: s(o.status),
    memSize: n(o.memSize),
    memGuaranteedSize: n(o.memGuaranteedSize),
    hash: s(o.hash),
    balloonActive: o.balloonActive === true,
    memoryDevices: Array.isArray(o.memoryDevices) ? o.memoryDevices.map(toDimm) : [],
  };
}

/** VM.getStats answers [VmStats], as VDSM (a bare object from older daemons is read too). */
export function toVmStatsResult(v: unknown): VmStats {
  return toVmStats(Array.isArray(v) ? v[0] : v);
}

/** `|virt|VM_status|<vmId>` params are {"<vmId>": VmStats, notify_time}, as VDSM. */
export function statusEventStats(vmId: string, params: unknown): VmStats {
  const p = rec(params);
  return toVmStats(vmId in p ? p[vmId] : params);
}

export function toVmList(v: unknown): VmListEntry[] {
  return (Array.isArray(v) ? v : []).map((e) => {
    const o = rec(e);
    return { vmId: s(o.vmId), vmName: s(o.vmName), status: s(o.status) };
  });
}

function mib(x: number): string {
  return Number.isFinite(x) ? formatMiB(x) : '-';
}
function num(x: number): string {
  return Number.isFinite(x) ? String(x) : '-';
}

export function renderVmList(vms: readonly VmStats[]): string {
  if (vms.length === 0) return 'No VMs.\n';
  const sorted = [...vms].sort((a, b) => a.vmName.localeCompare(b.vmName));
  return renderTable(
    [
      { header: 'NAME' },
      { header: 'UUID' },
      { header: 'STATUS' },
      { header: 'MEMORY', align: 'right' },
      { header: 'GUARANTEED', align: 'right' },
      { header: 'DIMMS', align: 'right' },
    ],
    sorted.map((v) => [
      v.vmName,
      v.vmId,
      v.status,
      mib(v.memSize),
      mib(v.memGuaranteedSize),
      String(v.memoryDevices.length),
    ]),
  );
}

export function renderDimms(devices: readonly Dimm[]): string {
  const dimms = devices.filter((d) => d.model !== 'virtio-mem');
  const vmem = devices.filter((d) => d.model === 'virtio-mem');
  if (dimms.length === 0) return vmem.length > 0 ? renderVirtioMem(vmem) : 'No memory devices (DIMMs).\n';
  return renderDimmTable(dimms) + (vmem.length > 0 ? `\n${renderVirtioMem(vmem)}` : '');
}

/** virtio-mem devices: maximum size, what was asked, what the guest has. */
export function renderVirtioMem(devices: readonly Dimm[]): string {
  return renderTable(
    [
      { header: 'VIRTIO-MEM' },
      { header: 'MAX', align: 'right' },
      { header: 'REQUESTED', align: 'right' },
      { header: 'CURRENT', align: 'right' },
      { header: 'BLOCK', align: 'right' },
      { header: 'NODE', align: 'right' },
      { header: 'STATE' },
    ],
    devices.map((d) => [
      d.alias,
      mib(d.size),
      mib(d.requested),
      mib(d.current),
      mib(d.block),
      num(d.node),
      d.state,
    ]),
  );
}

function renderDimmTable(dimms: readonly Dimm[]): string {
  return renderTable(
    [
      { header: 'ALIAS' },
      { header: 'SIZE', align: 'right' },
      { header: 'NODE', align: 'right' },
      { header: 'SLOT', align: 'right' },
      { header: 'BASE' },
      { header: 'STATE' },
      { header: 'GUEST' },
    ],
    [...dimms]
      .sort((a, b) => a.slot - b.slot)
      .map((d) => [d.alias, mib(d.size), num(d.node), num(d.slot), d.base, d.state, guestCell(d)]),
  );
}

/** The zone the guest holds a DIMM in; '(partly offline)' when some of its blocks are not online. */
function guestCell(d: Dimm): string {
  if (!d.guestZone) return '-';
  const partly = !d.guestOnline && d.guestZone !== 'offline' && d.guestZone !== 'unknown';
  return partly ? `${d.guestZone} (partly offline)` : d.guestZone;
}

export function renderVmShow(v: VmStats): string {
  const fields: [string, string][] = [
    ['Name', v.vmName],
    ['UUID', v.vmId],
    ['Status', v.status],
    ['Memory', mib(v.memSize)],
    ['Guaranteed', mib(v.memGuaranteedSize)],
    ['Balloon', v.balloonActive ? 'active (hot unplug with ballooning is not recommended)' : 'inactive'],
    ['Hash', v.hash],
  ];
  return `${renderFields(fields)}\n${renderDimms(v.memoryDevices)}`;
}

function stamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** One line per notification, like `virsh event --loop`. */
export function renderEvent(
  method: string,
  params: unknown,
  names: ReadonlyMap<string, string>,
  at: Date,
): string {
  const m = /^\|virt\|([^|]+)\|(.*)$/.exec(method);
  const p = rec(params);
  if (!m) return `${stamp(at)}  ${method}  ${JSON.stringify(params)}`;
  const [, kind = '', vmId = ''] = m;
  const who = names.get(vmId) ? `${names.get(vmId)} (${vmId})` : vmId;
  let detail: string;
  switch (kind) {
    case 'VM_status': {
      const v = statusEventStats(vmId, params);
      detail = `status=${v.status} memory=${num(v.memSize)}MiB guaranteed=${num(v.memGuaranteedSize)}MiB dimms=${v.memoryDevices.length} hash=${v.hash}`;
      break;
    }
    case 'device_removed':
      detail = `alias=${s(p.alias)} memory=${num(n(p.memSize))}MiB late=${p.late === true}`;
      break;
    case 'device_removal_failed':
      detail = `alias=${s(p.alias)} reason=${s(p.reason)}`;
      break;
    default:
      detail = JSON.stringify(params);
  }
  return `${stamp(at)}  ${kind.padEnd(21)}  ${who}  ${detail}`.replace(/[\r\n]/g, ' ');
}
