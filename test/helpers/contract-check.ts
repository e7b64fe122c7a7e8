// Holds every answer a test receives to the published contract: results
// against their method's result schema, notification params against theirs,
// error data against the codes and reasons of src/api/contract.ts. The
// schemas are the daemon's own (the ones rpc.discover publishes), so a
// handler that returns what OpenRPC does not describe fails the test that
// saw it.
import type { ValidateFunction } from 'ajv';
import { REASONS_BY_CODE } from '../../src/api/contract.js';
import { apiMethods } from '../../src/api/index.js';
import { NOTIFICATIONS } from '../../src/api/schemas.js';
import type { JsonSchema } from '../../src/rpc/method.js';
import { createAjv } from '../../src/rpc/validation.js';
import type { VmManager } from '../../src/virt/vm-manager.js';

export class ContractViolation extends Error {
  override name = 'ContractViolation';
}

const ajv = createAjv();

/** The daemon's method table; handlers are never called here, only the specs read. */
const specs = apiMethods({} as VmManager, {
  version: '',
  apiVersion: '',
  libvirtVersion: '',
  hypervisorVersion: '',
  hostname: '',
  libvirtConnected: () => true,
  status: () => {
    throw new Error('not called: only the specs are read');
  },
});

const resultValidators = new Map<string, ValidateFunction>(
  specs.map((s) => [s.name, ajv.compile(s.result as JsonSchema)]),
);
const notificationValidators = Object.entries(NOTIFICATIONS).map(
  ([prefix, schema]) => [prefix, ajv.compile(schema as unknown as JsonSchema)] as const,
);

/** Names of the methods whose results are checked. */
export const checkedMethods: readonly string[] = [...resultValidators.keys()];

function problems(v: ValidateFunction): string {
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');
}

/** Throws ContractViolation unless `result` matches the result schema of `method` (if it is an API method). */
export function checkResult(method: string, result: unknown): void {
  const v = resultValidators.get(method);
  if (v === undefined || v(result)) return;
  throw new ContractViolation(
    `${method} result does not match its published schema: ${problems(v)}: ${JSON.stringify(result).slice(0, 400)}`,
  );
}

/** Throws unless a notification's params match the schema of its kind; unknown kinds are violations too. */
export function checkNotification(method: string, params: unknown): void {
  const hit = notificationValidators.find(([prefix]) => method.startsWith(prefix));
  if (hit === undefined) throw new ContractViolation(`notification ${method} is not in the contract`);
  const [, v] = hit;
  if (!v(params)) {
    throw new ContractViolation(
      `notification ${method} params do not match the schema: ${problems(v)}: ${JSON.stringify(params).slice(0, 400)}`,
    );
  }
}

export interface ErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

/** Throws unless an error answer carries what the contract promises for its code. */
export function checkError(err: ErrorObject): void {
  const data = err.data as Record<string, unknown> | undefined;
  const reasons = REASONS_BY_CODE[err.code];
  if (reasons !== undefined) {
    const reason = data?.reason;
    if (typeof reason !== 'string' || !reasons.some((r) => r === reason)) {
      throw new ContractViolation(
        `error ${err.code} carries data.reason ${JSON.stringify(reason)}, not one of ${reasons.join(', ')}`,
      );
    }
  }
  if (err.code === -32602 && (typeof data?.field !== 'string' || typeof data?.rule !== 'string')) {
    throw new ContractViolation(`error -32602 must name data.field and data.rule: ${JSON.stringify(data)}`);
  }
  if (err.code === 100 && typeof data?.correlationId !== 'string') {
    throw new ContractViolation(`error 100 must carry data.correlationId: ${JSON.stringify(data)}`);
  }
}
