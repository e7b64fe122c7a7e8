// What the guest does with each DIMM, asked through its QEMU guest agent
// (libvirt's agent passthrough): are the DIMM's memory blocks online, and in
// which zone. Only ZONE_MOVABLE memory can reliably be given back; a DIMM the
// guest holds in ZONE_NORMAL is rejected on unplug once kernel data lands in
// it. No agent, a blocked command or no answer within the deadline: unknown.
//
// Agent commands used (all read-only; an agent policy must allow them):
// guest-get-memory-blocks (online state per block; its can-offline is the
// kernel's deprecated `removable`, always true), guest-file-open, -read and
// -close on /sys/devices/system/memory/block_size_bytes and
// memoryN/valid_zones (the zone of an online block). guest-exec would do too,
// but runs arbitrary commands as root in the guest: reading files is less.

import { LibvirtError, LibvirtErrorCode, LibvirtTimeoutError } from '../libvirt/errors.js';
import type { DomainRef, LibvirtApi } from '../libvirt/types.js';

export type GuestZone = 'movable' | 'normal' | 'offline' | 'mixed' | 'unknown';

export interface GuestDimmView {
  /** Every memory block of the DIMM is online in the guest. */
  online: boolean;
  zone: GuestZone;
}

export interface ProbedDimm {
  alias: string;
  /** Guest-physical base address (libvirt's `<address base='0x…'>`). */
  base: string;
  /** MiB */
  size: number;
}

export interface ProbeOptions {
  /** Whole probe, all commands; past it every DIMM is unknown. */
  deadlineMs?: number;
  /** libvirt's wait for each agent reply, seconds. */
  agentTimeoutS?: number;
}

/** A probe's answer: per DIMM its view (unknown when the guest could not say). */
export interface ProbeResult {
  views: Map<string, GuestDimmView>;
  /** The agent did not answer in time (the deadline, or libvirt's own wait): asked again now, it would make the caller wait as long. */
  silent: boolean;
}

export const UNKNOWN: GuestDimmView = Object.freeze({ online: false, zone: 'unknown' });
const DEFAULT_DEADLINE_MS = 3_000;
const DEFAULT_AGENT_TIMEOUT_S = 2;
const MEMORY_DIR = '/sys/devices/system/memory';
const MAX_READ = 4096;

/** An agent reply that is an error (`{"error": {...}}`), e.g. a command the agent's policy blocks. */
export class GuestAgentError extends Error {
  constructor(
    message: string,
    readonly agentClass?: string,
  ) {
    super(message);
    this.name = 'GuestAgentError';
  }
}

type Agent = (execute: string, args?: Record<string, unknown>) => Promise<unknown>;

function agentOf(api: LibvirtApi, dom: DomainRef, timeoutS: number): Agent | undefined {
  const call = api.qemuAgentCommand?.bind(api);
  if (!call) return undefined;
  return async (execute, args) => {
    const out = await call(dom, JSON.stringify(args ? { execute, arguments: args } : { execute }), timeoutS);
    const reply = JSON.parse(out ?? 'null') as {
      return?: unknown;
      error?: { class?: string; desc?: string };
    } | null;
    if (!reply || typeof reply !== 'object') throw new GuestAgentError(`${execute}: empty agent reply`);
    if (reply.error)
      throw new GuestAgentError(`${execute}: ${reply.error.desc ?? 'agent error'}`, reply.error.class);
    return reply.return;
  };
}

async function readGuestFile(agent: Agent, path: string): Promise<string> {
  const handle = await agent('guest-file-open', { path, mode: 'r' });
  if (typeof handle !== 'number') throw new GuestAgentError(`guest-file-open ${path}: no handle`);
  try {
    const r = (await agent('guest-file-read', { handle, count: MAX_READ })) as { 'buf-b64'?: unknown };
    if (typeof r?.['buf-b64'] !== 'string') throw new GuestAgentError(`guest-file-read ${path}: no data`);
    return Buffer.from(r['buf-b64'], 'base64').toString('utf8').trim();
  } finally {
    await agent('guest-file-close', { handle }).catch(() => undefined);
  }
}

/** The memory-block indices a DIMM covers, or undefined when its address is unknown or unaligned. */
export function dimmBlocks(dimm: ProbedDimm, blockBytes: bigint): bigint[] | undefined {
  if (!/^0x[0-9a-f]+$/i.test(dimm.base) || blockBytes <= 0n) return undefined;
  const base = BigInt(dimm.base);
  const bytes = BigInt(dimm.size) * 1024n * 1024n;
  if (base % blockBytes !== 0n || bytes % blockBytes !== 0n || bytes === 0n) return undefined;
  const first = base / blockBytes;
  const out: bigint[] = [];
  for (let i = 0n; i < bytes / blockBytes; i++) out.push(first + i);
  return out;
}

/**
 * Per block: 'offline', or the zone it is online in (valid_zones of an online
 * block names exactly that zone). The DIMM's zone is that of its online
 * blocks ('mixed': some Movable, some not, which the guest cannot give back
 * whole); `online` says whether all of them are. No block online: 'offline'.
 */
export function classify(blocks: readonly (string | undefined)[]): GuestDimmView {
  if (blocks.length === 0 || blocks.some((b) => b === undefined)) return UNKNOWN;
  const online = blocks.every((b) => b !== 'offline');
  const zones = new Set(
    blocks.filter((b) => b !== 'offline').map((b): GuestZone => (b === 'Movable' ? 'movable' : 'normal')),
  );
  if (zones.size > 1) return { online, zone: 'mixed' };
  const [zone] = zones;
  return { online, zone: zone ?? 'offline' };
}

/**
 * Asks the guest about each DIMM. Never rejects: whatever fails (no agent,
 * blocked command, silence past the deadline) makes the DIMMs concerned unknown.
 */
export async function probeGuestMemory(
  api: LibvirtApi,
  dom: DomainRef,
  dimms: readonly ProbedDimm[],
  opts: ProbeOptions = {},
): Promise<ProbeResult> {
  const result = new Map<string, GuestDimmView>(dimms.map((d) => [d.alias, UNKNOWN]));
  const agent = agentOf(api, dom, opts.agentTimeoutS ?? DEFAULT_AGENT_TIMEOUT_S);
  if (!agent || dimms.length === 0) return { views: result, silent: false };
  let silent = false;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), opts.deadlineMs ?? DEFAULT_DEADLINE_MS);
  });
  try {
    const views = await Promise.race([probe(agent, dimms), deadline]);
    if (views === 'deadline') silent = true;
    else for (const [alias, v] of views) result.set(alias, v);
  } catch (err) {
    // unknown, as initialised
    silent = isUnresponsive(err);
  } finally {
    clearTimeout(timer);
  }
  return { views: result, silent };
}

/** libvirt gave up waiting for the agent, or our call to libvirt timed out. */
function isUnresponsive(err: unknown): boolean {
  return (
    (err instanceof LibvirtError && err.code === LibvirtErrorCode.AGENT_UNRESPONSIVE) ||
    err instanceof LibvirtTimeoutError
  );
}

async function probe(agent: Agent, dimms: readonly ProbedDimm[]): Promise<Map<string, GuestDimmView>> {
  const list = await agent('guest-get-memory-blocks');
  if (!Array.isArray(list)) throw new GuestAgentError('guest-get-memory-blocks: not a list');
  const online = new Map<bigint, boolean>();
  for (const b of list as { 'phys-index'?: unknown; online?: unknown }[]) {
    if (typeof b?.['phys-index'] === 'number') online.set(BigInt(b['phys-index']), b.online === true);
  }
  const blockBytes = BigInt(`0x${await readGuestFile(agent, `${MEMORY_DIR}/block_size_bytes`)}`);
  const out = new Map<string, GuestDimmView>();
  for (const d of dimms) {
    const idx = dimmBlocks(d, blockBytes);
    if (!idx) {
      out.set(d.alias, UNKNOWN);
      continue;
    }
    const states: (string | undefined)[] = [];
    for (const i of idx) {
      const on = online.get(i);
      if (on === undefined)
        states.push(undefined); // the guest has no such block (yet)
      else if (!on) states.push('offline');
      else states.push((await readGuestFile(agent, `${MEMORY_DIR}/memory${i}/valid_zones`)).split(/\s+/)[0]);
    }
    out.set(d.alias, classify(states));
  }
  return out;
}
