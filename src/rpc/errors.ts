// JSON-RPC error objects. Handlers throw RpcError; anything else thrown
// becomes code UNEXPECTED with a correlation id (see dispatcher). These are
// the transport's codes; the API's own (no such VM, hot plug failed, ...) are
// in src/api/contract.ts.

export const RpcErrorCode = {
  PARSE: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL: -32603,
  /** Implementation-defined server error: per-connection in-flight cap, shutting down. */
  SERVER_BUSY: -32000,
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
