// Maps domain errors (src/virt) to the API's JSON-RPC error codes
// (docs/design.md, "API contract"). Kept apart so the handlers stay one line each.
import { RpcError, RpcErrorCode } from '../rpc/errors.js';
import { VirtError } from '../virt/errors.js';

const codeByKind: Record<VirtError['kind'], number> = {
  'no-such-vm': RpcErrorCode.NO_SUCH_VM,
  migrating: RpcErrorCode.MIGRATING,
  hotplug: RpcErrorCode.HOTPLUG_FAILED,
  hotunplug: RpcErrorCode.HOTUNPLUG_FAILED,
  invalid: RpcErrorCode.INVALID_PARAMS,
};

/** Rethrows a VirtError as the RpcError engines expect; anything else unchanged. */
export function toRpcError(err: unknown): unknown {
  if (!(err instanceof VirtError)) return err;
  return new RpcError(codeByKind[err.kind], err.message, { reason: err.reason, ...err.details });
}

/** Runs fn, translating domain errors. */
export async function mapErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toRpcError(err);
  }
}

/** A semantic params error that JSON Schema cannot express (e.g. two fields that must agree). */
export function invalidParam(field: string, rule: string, message: string): RpcError {
  return new RpcError(RpcErrorCode.INVALID_PARAMS, `invalid params: ${field} ${message}`, {
    field,
    rule,
    message,
  });
}
