// Every notification the daemon sends, numbered: a per-boot sequence number
// and a boot id stamp each one, the last ones are kept (bounded by count and
// age) so that a client can resume after a reconnect without loss, and
// outcomes published while nobody listened are handed to every client that
// connects or subscribes later, not only the first. Transport-agnostic: the
// WebSocket and STOMP fronts register as sinks.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';

export interface JournalEntry {
  seq: number;
  bootId: string;
  /** ms since the epoch, when published. */
  time: number;
  method: string;
  params: unknown;
  /** The JSON-RPC notification as sent: {jsonrpc, method, params, seq, bootId}. */
  text: string;
  /** Kept for later clients if nobody listened when it was published. */
  hold: boolean;
  /** Someone was listening when it was published. */
  heard: boolean;
}

export interface EventSink {
  /** Clients that would receive a notification published now. */
  listeners(): number;
  deliver(entry: JournalEntry): void;
}

export interface PublishOptions {
  /** An outcome a client must not miss (device removed / removal failed): replayed if unheard. */
  hold?: boolean;
}

export interface JournalOptions {
  maxEntries?: number;
  maxAgeMs?: number;
  now?: () => number;
  log?: Logger;
}

/** Where a reconnecting client says it stopped: after `since` of boot `bootId`. */
export interface ResumePoint {
  since: number;
  bootId?: string;
}

export interface EventsPage {
  bootId: string;
  /** Highest seq published so far (0 before the first). */
  lastSeq: number;
  /** Lowest seq still kept; a client whose `since` is below oldestSeq - 1 lost events. */
  oldestSeq: number;
  /** The resume point named another boot: events are all kept ones of this boot. */
  bootChanged: boolean;
  /** Events older than the client's point were dropped by the bounds: the client missed some. */
  gap: boolean;
  events: { seq: number; time: number; method: string; params: unknown }[];
}

export const DEFAULT_MAX_ENTRIES = 10_000;
export const DEFAULT_MAX_AGE_MS = 24 * 60 * 60 * 1000;

export class EventJournal {
  readonly bootId: string = randomUUID();
  private readonly entries: JournalEntry[] = [];
  private readonly sinks = new Set<EventSink>();
  private seq = 0;
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly log: Logger | undefined;

  constructor(opts: JournalOptions = {}) {
    this.maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    this.maxAgeMs = opts.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
  }

  addSink(sink: EventSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Number, keep and deliver one notification. null if params cannot be sent as JSON (logged, dropped). */
  notify(method: string, params: unknown, opts: PublishOptions = {}): JournalEntry | null {
    const seq = this.seq + 1;
    let text: string;
    try {
      text = JSON.stringify({ jsonrpc: '2.0', method, params, seq, bootId: this.bootId });
    } catch (err) {
      this.log?.error({ err, method }, 'notification not serialisable; dropped');
      return null;
    }
    this.seq = seq;
    let listeners = 0;
    for (const s of this.sinks) listeners += s.listeners();
    const entry: JournalEntry = {
      seq,
      bootId: this.bootId,
      time: this.now(),
      method,
      // Read back from the text when asked (Host.getEvents): a kept entry
      // holds one string, not the params' objects too.
      get params(): unknown {
        return (JSON.parse(text) as { params: unknown }).params;
      },
      text,
      hold: opts.hold === true,
      heard: listeners > 0,
    };
    this.entries.push(entry);
    // Pruned in batches (every read prunes exactly first): dropping one entry
    // per notification moved the whole array each time once it was full.
    if (this.entries.length > this.maxEntries + (this.maxEntries >> 4)) this.prune();
    if (entry.hold && !entry.heard) {
      this.log?.info({ method, seq }, 'notification kept for clients that connect later (nobody listening)');
    }
    for (const s of this.sinks) s.deliver(entry);
    return entry;
  }

  /**
   * What a client that just connected or subscribed must be sent first: with a
   * resume point, every kept event after it; without, the held outcomes that
   * nobody heard.
   */
  replayFor(resume: ResumePoint | undefined): JournalEntry[] {
    this.prune();
    if (resume === undefined) return this.entries.filter((e) => e.hold && !e.heard);
    const since = resume.bootId !== undefined && resume.bootId !== this.bootId ? 0 : resume.since;
    return this.after(since);
  }

  /** The kept events after a resume point, for Host.getEvents. */
  page(resume: ResumePoint): EventsPage {
    this.prune();
    const bootChanged = resume.bootId !== undefined && resume.bootId !== this.bootId;
    const since = bootChanged ? 0 : resume.since;
    const oldestSeq = this.entries[0]?.seq ?? this.seq + 1;
    return {
      bootId: this.bootId,
      lastSeq: this.seq,
      oldestSeq,
      bootChanged,
      gap: bootChanged ? oldestSeq > 1 : since < oldestSeq - 1,
      events: this.after(since).map((e) => ({
        seq: e.seq,
        time: e.time,
        method: e.method,
        params: e.params,
      })),
    };
  }

  private after(since: number): JournalEntry[] {
    // Entries are in seq order: binary search for the first seq > since.
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.entries[mid] as JournalEntry).seq <= since) lo = mid + 1;
      else hi = mid;
    }
    return this.entries.slice(lo);
  }

  private prune(): void {
    let drop = Math.max(0, this.entries.length - this.maxEntries);
    const cutoff = this.now() - this.maxAgeMs;
    while (drop < this.entries.length && (this.entries[drop] as JournalEntry).time < cutoff) drop++;
    if (drop > 0) this.entries.splice(0, drop);
  }
}

/** Parses a resume point from strings (a URL query or STOMP headers); null if malformed. */
export function parseResumePoint(
  since: string | null | undefined,
  bootId: string | null | undefined,
): ResumePoint | undefined | null {
  if (since === null || since === undefined) return bootId ? null : undefined;
  if (!/^\d{1,15}$/.test(since)) return null;
  if (bootId !== null && bootId !== undefined && !/^[0-9a-f-]{36}$/i.test(bootId)) return null;
  return bootId ? { since: Number(since), bootId } : { since: Number(since) };
}
