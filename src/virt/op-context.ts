// What an operation body (hot plug, hot unplug, setMemory) runs with, and the
// logger of its steps.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { LibvirtApi } from '../libvirt/types.js';
import type { OperationObserver } from './observer.js';

export type OpLog = (step: string, extra?: Record<string, unknown>) => void;

export interface OpContext {
  client: LibvirtApi;
  /** Told of each DIMM's outcome (metrics); guarded, so it never throws. */
  observer: Required<OperationObserver>;
  opts: {
    readonly unplugTimeoutMs: number;
    readonly dimmAlignmentMiB: number;
  };
}

function newOpId(): string {
  return `op-${randomUUID().slice(0, 8)}`;
}

/** Steps that end an operation well: logged at info, with the time of every step before. */
const FINAL_STEPS = new Set(['removed', 'done']);

/**
 * A step logger carrying the operation's fields and the time since it was
 * created. Intermediate steps are debug lines; the final step is one info
 * line holding all the step times (`steps`), so an unplug costs one log line
 * at info, not six (log lines were a large share of an unplug's CPU time:
 * bench/README.md). Warnings and failures stay warn lines.
 */
export function createOpLog(
  parent: Logger,
  operation: string,
  vmId: string,
  opId: string | undefined,
  alias?: string,
): OpLog {
  const t0 = performance.now();
  const log = parent.child({ operation, vmId, opId: opId ?? newOpId(), ...(alias ? { alias } : {}) });
  const steps: Record<string, number> = {};
  return (step, extra) => {
    const durationMs = Math.round((performance.now() - t0) * 10) / 10;
    steps[step] = durationMs;
    const fields = { step, durationMs, ...extra };
    if (step.startsWith('warning') || /failed|timed out/.test(step)) log.warn({ ...fields, steps }, step);
    else if (FINAL_STEPS.has(step)) log.info({ ...fields, steps }, step);
    else log.debug(fields, step);
  };
}
