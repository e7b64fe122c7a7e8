// `vmhost-client status`: Host.getStatus read defensively (another daemon
// version may answer) and rendered as one screen.

import { renderFields, renderTable } from './table.js';

export interface StatusOp {
  operation: string;
  vmId: string;
  vmName: string;
  alias: string;
  /** ISO time: since (in flight) or at (outcome). */
  time: string;
  outcome: string;
  durationMs: number | null;
}

export interface StatusView {
  startedAt: string;
  uptimeSeconds: number;
  libvirt: { connected: boolean; reconnects: number; since: string };
  vmsTotal: number;
  vmsByStatus: [string, number][];
  dimms: { plugged: number; unplugging: number };
  clients: [string, number][];
  inFlight: StatusOp[];
  recent: StatusOp[];
}

function rec(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const counts = (v: unknown): [string, number][] =>
  Object.entries(rec(v))
    .map(([k, n]): [string, number] => [k, num(n)])
    .sort((a, b) => a[0].localeCompare(b[0]));

function toOp(v: unknown, timeKey: 'since' | 'at'): StatusOp {
  const o = rec(v);
  return {
    operation: str(o.operation),
    vmId: str(o.vmId),
    vmName: str(o.vmName),
    alias: str(o.alias),
    time: str(o[timeKey]),
    outcome: str(o.outcome),
    durationMs: typeof o.durationMs === 'number' ? o.durationMs : null,
  };
}

export function toStatus(v: unknown): StatusView {
  const o = rec(v);
  const lv = rec(o.libvirt);
  const vms = rec(o.vms);
  const dimms = rec(o.dimms);
  return {
    startedAt: str(o.startedAt),
    uptimeSeconds: num(o.uptimeSeconds),
    libvirt: { connected: lv.connected === true, reconnects: num(lv.reconnects), since: str(lv.since) },
    vmsTotal: num(vms.total),
    vmsByStatus: counts(vms.byStatus),
    dimms: { plugged: num(dimms.plugged), unplugging: num(dimms.unplugging) },
    clients: counts(o.clients),
    inFlight: (Array.isArray(o.inFlight) ? o.inFlight : []).map((e) => toOp(e, 'since')),
    recent: (Array.isArray(o.recent) ? o.recent : []).map((e) => toOp(e, 'at')),
  };
}

/** 3d 4h, 2h 5m, 7m 12s, 42s */
export function formatUptime(seconds: number): string {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** 850 ms, 1.25 s, 31 s */
export function formatDuration(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${Math.round(ms / 1000)} s`;
}

function clock(iso: string): string {
  const m = /T(\d\d:\d\d:\d\d)/.exec(iso);
  return m?.[1] ?? iso;
}

const vmLabel = (op: StatusOp): string => op.vmName || op.vmId;
const list = (pairs: [string, number][]): string => pairs.map(([k, n]) => `${n} ${k}`).join(', ');

export function renderStatus(st: StatusView, nowMs: number): string {
  const lv = st.libvirt;
  const since = lv.since ? ` since ${clock(lv.since)}` : '';
  const fields: [string, string][] = [
    ['Uptime', `${formatUptime(st.uptimeSeconds)} (started ${st.startedAt})`],
    [
      'libvirt',
      `${lv.connected ? 'connected' : 'DISCONNECTED'}${since}, ${lv.reconnects} reconnect${lv.reconnects === 1 ? '' : 's'}`,
    ],
    ['VMs', st.vmsTotal === 0 ? '0' : `${st.vmsTotal} (${list(st.vmsByStatus)})`],
    ['DIMMs', `${st.dimms.plugged} plugged, ${st.dimms.unplugging} unplugging`],
    ['Clients', st.clients.length === 0 ? '0' : list(st.clients)],
    ['In flight', String(st.inFlight.length)],
  ];
  let out = renderFields(fields);
  if (st.inFlight.length > 0) {
    out += `\n${renderTable(
      [{ header: 'OPERATION' }, { header: 'VM' }, { header: 'ALIAS' }, { header: 'RUNNING', align: 'right' }],
      st.inFlight.map((op) => [
        op.operation,
        vmLabel(op),
        op.alias || '-',
        formatDuration(Math.max(0, nowMs - Date.parse(op.time))),
      ]),
    )}`;
  }
  out += '\nLast outcomes (newest first):\n';
  if (st.recent.length === 0) return `${out}  none yet\n`;
  return (
    out +
    renderTable(
      [
        { header: 'TIME' },
        { header: 'OPERATION' },
        { header: 'VM' },
        { header: 'ALIAS' },
        { header: 'OUTCOME' },
        { header: 'DURATION', align: 'right' },
      ],
      st.recent.map((op) => [
        clock(op.time),
        op.operation,
        vmLabel(op),
        op.alias || '-',
        op.outcome,
        formatDuration(op.durationMs),
      ]),
    )
  );
}
