// What the domain layer tells an observer (the daemon's metrics, the status
// screen) about its operations: typed facts with durations, so observers
// need no access to the records or the state machine. Every callback is
// optional; one that throws is logged, never fatal (guardedObserver).

import { VirtError } from './errors.js';

export type OperationName = 'hotplug' | 'hotunplug' | 'setMemory' | 'resize';

export interface OperationInfo {
  operation: OperationName;
  /** lower-case UUID */
  vmId: string;
  /** The DIMM, when the call names one (hot unplug, or hot plug with an alias). */
  alias?: string;
}

/** How one DIMM's hot unplug attempt ended: 'removed' or a hot-unplug reason. */
export interface UnplugFinished {
  vmId: string;
  alias: string;
  outcome: string;
  /** From the unplug's start inside the VM's worker to its outcome. */
  durationMs: number;
}

export interface PlugFinished {
  vmId: string;
  alias: string | undefined;
  /** 'plugged' or a hot-plug reason. */
  outcome: string;
  durationMs: number;
}

/** How one virtio-mem device's resize ended: 'resized' or its reason (timeout, stalled, vm-gone, ...). */
export interface ResizeFinished {
  vmId: string;
  alias: string;
  outcome: string;
  /** From the resize's start inside the VM's worker to its answer (a settle included). */
  durationMs: number;
}

export interface OperationObserver {
  /** A call was accepted (queued behind the VM's worker, or running). */
  operationStarted?(op: OperationInfo): void;
  /**
   * The call answered, `op` being the object given to operationStarted.
   * outcome: 'ok', 'partial' (setMemory with some unplugs failed), or the
   * reason of the error it answered ('error' for an unexpected one).
   */
  operationFinished?(op: OperationInfo, outcome: string, durationMs: number): void;
  /** One DIMM's unplug ended (VM.hotunplugMemory, or each of VM.setMemory's). */
  unplugFinished?(e: UnplugFinished): void;
  /** The guest released a DIMM: detach sent -> device-removed, for a call that waited. */
  guestReleased?(e: { vmId: string; alias: string; durationMs: number }): void;
  /** One DIMM's hot plug ended. */
  plugFinished?(e: PlugFinished): void;
  /** One virtio-mem device's resize ended (VM.resizeMemoryDevice, or each of VM.setMemory's). */
  resizeFinished?(e: ResizeFinished): void;
}

/** The outcome an operation's error stands for: its VirtError reason, else 'error'. */
export function outcomeOfError(err: unknown): string {
  return err instanceof VirtError ? err.reason : 'error';
}

type Callbacks = Required<OperationObserver>;

/** The observer with every callback present, each guarded: one that throws is logged, never fatal. */
export function guardedObserver(
  o: OperationObserver | undefined,
  log: { error(obj: object, msg: string): void },
): Callbacks {
  const guard =
    <K extends keyof Callbacks>(name: K) =>
    (...args: Parameters<Callbacks[K]>): void => {
      const fn = o?.[name] as ((...a: Parameters<Callbacks[K]>) => void) | undefined;
      if (!fn) return;
      try {
        fn.apply(o, args);
      } catch (err) {
        log.error({ err, callback: name }, 'operation observer failed');
      }
    };
  return {
    operationStarted: guard('operationStarted'),
    operationFinished: guard('operationFinished'),
    unplugFinished: guard('unplugFinished'),
    guestReleased: guard('guestReleased'),
    plugFinished: guard('plugFinished'),
    resizeFinished: guard('resizeFinished'),
  };
}

/**
 * Runs one call, telling the observer it started and how it ended:
 * `outcome(result)` for a result (default 'ok'), the error's reason for a
 * failure. The result or error passes through unchanged.
 */
export async function observeOperation<T>(
  observer: Callbacks,
  op: OperationInfo,
  run: () => Promise<T>,
  outcome: (r: T) => string = () => 'ok',
): Promise<T> {
  const t0 = performance.now();
  observer.operationStarted(op);
  try {
    const r = await run();
    observer.operationFinished(op, outcome(r), performance.now() - t0);
    return r;
  } catch (err) {
    observer.operationFinished(op, outcomeOfError(err), performance.now() - t0);
    throw err;
  }
}

/** Runs one DIMM's unplug or plug and reports its outcome and duration through `report`. */
export async function observeDimm<T>(
  report: (outcome: string, durationMs: number) => void,
  success: string,
  run: () => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  try {
    const r = await run();
    report(success, performance.now() - t0);
    return r;
  } catch (err) {
    report(outcomeOfError(err), performance.now() - t0);
    throw err;
  }
}
