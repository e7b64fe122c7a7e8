// When the guest is asked about its DIMMs (guest-memory.ts does the asking),
// off every request's path: VmStats carries the last answer per DIMM, which
// the VM's worker keeps in the VM record (the one writer of a VM's record;
// docs/design.md, "Guest movability"). A probe runs when the VM's DIMM set
// changes (a plug, a removal, a boot), periodically (a guest can re-online a
// block), and fresh for an unplug's or setMemory's pre-flight, which does not
// trust a cached answer. Probes are bounded by a short deadline and a host-wide
// cap on concurrent probes, so thousands of VMs or silent agents cost little.
// An agent that did not answer its VM's last probe is not waited for by a
// pre-flight (the call goes on as with no agent: zone unknown); a background
// probe asks again, and the first answer ends this.

import type { DomainRef, LibvirtApi } from '../libvirt/types.js';
import { VirtError } from './errors.js';
import { type GuestDimmView, type ProbedDimm, type ProbeResult, probeGuestMemory } from './guest-memory.js';

export interface GuestProbeOptions {
  /** Between periodic probes of a VM with DIMMs; 0: none (only on changes and pre-flights). */
  intervalMs: number;
  /** One probe, every agent command of it; past it the DIMMs are unknown. */
  deadlineMs: number;
  /** Probes in flight on the host at most. */
  concurrency: number;
}

export const DEFAULT_GUEST_PROBE: GuestProbeOptions = {
  intervalMs: 60_000,
  deadlineMs: 3_000,
  concurrency: 4,
};

export type GuestViews = ReadonlyMap<string, GuestDimmView>;

/**
 * The guest holds (part of) the DIMM in ZONE_NORMAL, where kernel data lands
 * and pins it: it would reject the unplug. 'unknown' is not a reason to refuse
 * (no agent is the common case); 'offline' gives back trivially.
 */
export function holdsKernelMemory(v: GuestDimmView | undefined): boolean {
  return v?.zone === 'normal' || v?.zone === 'mixed';
}

export function notMovable(alias: string, v: GuestDimmView): VirtError {
  return new VirtError(
    'hotunplug',
    'not-movable',
    `the guest holds DIMM ${alias} in ZONE_NORMAL (zone ${v.zone}): it would refuse the unplug; not tried (force: true tries anyway)`,
    { alias, zone: v.zone, online: v.online },
  );
}

/** What a VM's probe loop reads and writes, through the VM's worker. */
export interface ProbeTarget {
  /** The DIMMs to ask about now (none when the VM is not running), and the ref to call with. */
  subject(): { ref: DomainRef; dimms: ProbedDimm[]; run: number } | undefined;
  /** Hands a probe's answer to the worker, which writes the record. */
  apply(dimms: readonly ProbedDimm[], views: GuestViews): void;
}

/** An answering agent's time per command (TCG guest: 3-5 ms measured), with room for a busy host. */
const PER_COMMAND_MS = 10;
/** Blocks are at least this big (x86-64: 128 MiB below 64 GiB of memory, larger above). */
const MIN_BLOCK_MIB = 128;

/**
 * A probe reads each online block's valid_zones (3 agent commands), so big
 * DIMMs need more than the base deadline from an agent that answers: the
 * deadline grows by their block count (64 GiB of DIMMs: +15 s).
 */
export function probeDeadlineMs(baseMs: number, dimms: readonly ProbedDimm[]): number {
  const blocks = dimms.reduce((n, d) => n + Math.ceil(d.size / MIN_BLOCK_MIB), 0);
  return baseMs + blocks * 3 * PER_COMMAND_MS;
}

/** The host-wide side: the agent calls, under a cap on concurrent probes. */
export class GuestProber {
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    private readonly client: LibvirtApi,
    readonly opts: GuestProbeOptions,
  ) {}

  async probe(ref: DomainRef, dimms: readonly ProbedDimm[]): Promise<ProbeResult> {
    const { deadlineMs } = this.opts;
    if (this.inFlight >= this.opts.concurrency) await new Promise<void>((r) => this.queue.push(r));
    this.inFlight++;
    try {
      // libvirt's wait per agent command stays under the base deadline, so a
      // silent agent is given up on within it whatever the DIMMs' size.
      const agentTimeoutS = Math.max(1, Math.floor(deadlineMs / 1000) - 1);
      return await probeGuestMemory(this.client, ref, dimms, {
        deadlineMs: probeDeadlineMs(deadlineMs, dimms),
        agentTimeoutS,
      });
    } finally {
      this.inFlight--;
      this.queue.shift()?.();
    }
  }

  loop(target: ProbeTarget): GuestProbeLoop {
    return new GuestProbeLoop(this, target);
  }
}

/** Identity of what a probe asked about: a reboot or a changed DIMM set asks again. */
function keyOf(s: { dimms: readonly ProbedDimm[]; run: number } | undefined): string {
  if (!s || s.dimms.length === 0) return '';
  return `${s.run}|${s.dimms.map((d) => `${d.alias}@${d.base}/${d.size}`).join(',')}`;
}

/** One VM's probes: at most one background probe at a time, answers applied in the order probes started. */
export class GuestProbeLoop {
  private lastKey = '';
  private running = false;
  private again = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private started = 0;
  private applied = 0;
  /** The last applied probe found the agent silent. */
  private silent = false;

  constructor(
    private readonly prober: GuestProber,
    private readonly target: ProbeTarget,
  ) {}

  /** The record changed: probe if the DIMMs (or the run) differ from those last asked about. */
  changed(): void {
    const key = keyOf(this.target.subject());
    if (key === this.lastKey) return;
    this.lastKey = key;
    if (key === '') this.clearTimer();
    else this.kick();
  }

  /** Probe soon in the background (after an operation, or on the periodic timer). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.clearTimer();
    void this.run();
  }

  /** The agent did not answer the last probe (a pre-flight does not wait for it). */
  get agentSilent(): boolean {
    return this.silent;
  }

  /**
   * A fresh probe of `dimms` (the pre-flight): applied, and returned. None
   * (no views) while the agent is silent: a background probe asks instead.
   */
  async now(dimms: readonly ProbedDimm[]): Promise<GuestViews> {
    const s = this.target.subject();
    if (!s || dimms.length === 0) return new Map();
    if (this.silent) {
      this.kick();
      return new Map();
    }
    return this.probeAndApply(s.ref, dimms);
  }

  stop(): void {
    this.stopped = true;
    this.clearTimer();
  }

  private async run(): Promise<void> {
    try {
      do {
        this.again = false;
        const s = this.target.subject();
        if (!s || s.dimms.length === 0) break;
        await this.probeAndApply(s.ref, s.dimms);
      } while (this.again && !this.stopped);
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private async probeAndApply(ref: DomainRef, dimms: readonly ProbedDimm[]): Promise<GuestViews> {
    const seq = ++this.started;
    const { views, silent } = await this.prober.probe(ref, dimms);
    // An older probe that ends after a newer one must not overwrite its answer.
    if (seq > this.applied && !this.stopped) {
      this.applied = seq;
      this.silent = silent;
      this.target.apply(dimms, views);
    }
    return views;
  }

  private schedule(): void {
    const every = this.prober.opts.intervalMs;
    if (this.stopped || every <= 0 || this.lastKey === '' || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, every);
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
