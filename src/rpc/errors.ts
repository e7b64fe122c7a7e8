// JSON-RPC error objects the API returns. Handlers throw RpcError; anything
// else thrown becomes code UNEXPECTED with a correlation id (see dispatcher).

export const RpcErrorCode = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** Implementation-defined server error: per-connection in-flight cap, shutting down. */
  SERVER_BUSY: -32000,
  NO_SUCH_VM: 1,
  MIGRATING: 51,
  HOTPLUG_FAILED: 70,
  HOTUNPLUG_FAILED: 85,
  UNEXPECTED: 100,
} as const;

export class RpcError extends Error {
  readonly code: number;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: number, message: string, data?: Record<string, unknown>) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.data = data;
  }

  toJSON(): { code: number; message: string; data?: Record<string, unknown> } {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}
