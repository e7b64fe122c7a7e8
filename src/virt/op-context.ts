// What an operation body (hot plug, hot unplug, setMemory) runs with, and the
// logger of its steps.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { LibvirtApi } from '../libvirt/types.js';

export type OpLog = (step: string, extra?: Record<string, unknown>) => void;

export interface OpContext {
  client: LibvirtApi;
  opts: {
    readonly unplugTimeoutMs: number;
    readonly dimmAlignmentMiB: number;
  };
}

function newOpId(): string {
  return `op-${randomUUID().slice(0, 8)}`;
}

/** A step logger carrying the operation's fields and the time since it was created. */
export function createOpLog(
  parent: Logger,
  operation: string,
  vmId: string,
  opId: string | undefined,
  alias?: string,
): OpLog {
  const t0 = performance.now();
  const log = parent.child({ operation, vmId, opId: opId ?? newOpId(), ...(alias ? { alias } : {}) });
  return (step, extra) => {
    const fields = { step, durationMs: Math.round((performance.now() - t0) * 10) / 10, ...extra };
    if (step.startsWith('warning')) log.warn(fields, step);
    else if (/failed|timed out/.test(step)) log.warn(fields, step);
    else log.info(fields, step);
  };
}
