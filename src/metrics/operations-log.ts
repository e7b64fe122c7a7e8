// The operations in flight and the last outcomes, for the status screen
// (Host.getStatus / vmhost-client status). Bounded: only the newest
// `keep` outcomes are held.

export interface InFlightOperation {
  operation: string;
  vmId: string;
  alias?: string;
  /** ISO time the call was accepted. */
  since: string;
}

export interface OutcomeEntry {
  /** ISO time the outcome was known. */
  at: string;
  /** hotplug, hotunplug, setMemory, or late-removal (a guest released a DIMM after its call ended). */
  operation: string;
  vmId: string;
  alias?: string;
  outcome: string;
  /** null when unknown (a late removal found after a restart). */
  durationMs: number | null;
}

interface Running {
  entry: InFlightOperation;
  method: string;
}

export class OperationsLog {
  private readonly running = new Map<object, Running>();
  private readonly outcomes: OutcomeEntry[] = [];

  constructor(
    private readonly keep = 10,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** `key` identifies the call until finished(key) (object identity). */
  started(key: object, op: { operation: string; vmId: string; alias?: string }): void {
    const entry: InFlightOperation = {
      operation: op.operation,
      vmId: op.vmId,
      ...(op.alias !== undefined ? { alias: op.alias } : {}),
      since: this.now().toISOString(),
    };
    this.running.set(key, { entry, method: op.operation });
  }

  /** Ends the call started with `key` and records its outcome; an unknown key only records. */
  finished(
    key: object,
    op: { operation: string; vmId: string; alias?: string },
    outcome: string,
    durationMs: number | null,
  ): void {
    this.running.delete(key);
    this.record({ operation: op.operation, vmId: op.vmId, alias: op.alias, outcome, durationMs });
  }

  record(e: {
    operation: string;
    vmId: string;
    alias?: string | undefined;
    outcome: string;
    durationMs: number | null;
  }): void {
    this.outcomes.push({
      at: this.now().toISOString(),
      operation: e.operation,
      vmId: e.vmId,
      ...(e.alias !== undefined ? { alias: e.alias } : {}),
      outcome: e.outcome,
      durationMs: e.durationMs,
    });
    if (this.outcomes.length > this.keep) this.outcomes.splice(0, this.outcomes.length - this.keep);
  }

  /** Oldest first. */
  inFlight(): InFlightOperation[] {
    return [...this.running.values()].map((r) => ({ ...r.entry }));
  }

  inFlightByMethod(): Map<string, number> {
    const by = new Map<string, number>();
    for (const r of this.running.values()) by.set(r.method, (by.get(r.method) ?? 0) + 1);
    return by;
  }

  /** Newest first. */
  recent(): OutcomeEntry[] {
    return this.outcomes
      .slice()
      .reverse()
      .map((e) => ({ ...e }));
  }
}
