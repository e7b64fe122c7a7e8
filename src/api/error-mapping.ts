// Maps domain errors (src/virt) to the API's JSON-RPC error codes
// (docs/design.md, "Errors"). Kept apart so the handlers stay one line each.
import { RpcError } from '../rpc/errors.js';
import { VirtError } from '../virt/errors.js';
import { ErrorCode } from './contract.js';

const codeByKind: Record<Exclude<VirtError['kind'], 'invalid'>, number> = {
  'no-such-vm': ErrorCode.NO_SUCH_VM,
  migrating: ErrorCode.MIGRATING,
  hotplug: ErrorCode.HOTPLUG_FAILED,
  hotunplug: ErrorCode.HOTUNPLUG_FAILED,
  'shutting-down': ErrorCode.SERVER_BUSY,
};

/** Rethrows a VirtError as the RpcError engines expect; anything else unchanged. */
export function toRpcError(err: unknown): unknown {
  if (!(err instanceof VirtError)) return err;
  if (err.kind === 'invalid') {
    // Same data shape as a schema failure: {field, rule, message}.
    return new RpcError(ErrorCode.INVALID_PARAMS, err.message, { ...err.details, message: err.message });
  }
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
  return new RpcError(ErrorCode.INVALID_PARAMS, `invalid params: ${field} ${message}`, {
    field,
    rule,
    message,
  });
}
