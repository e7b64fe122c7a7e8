// The CLI's failure kinds, each with its exit code (see `vmhost-client --help`).

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2, CONNECT: 3 } as const;

/** Bad command line: exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Cannot reach the daemon, or lost it mid-call: exit 3. */
export class ConnectError extends Error {
  override name = 'ConnectError';
}

/** The daemon answered with a JSON-RPC error: exit 1. */
export class RpcCallError extends Error {
  override name = 'RpcCallError';
  constructor(
    readonly method: string,
    readonly code: number,
    message: string,
    readonly data: unknown,
  ) {
    super(message);
  }
  get reason(): string | undefined {
    const d = this.data;
    if (d && typeof d === 'object' && 'reason' in d && typeof d.reason === 'string') return d.reason;
    return undefined;
  }
}

/** A failure found by the CLI itself (e.g. no VM by that name): exit 1. */
export class OperationError extends Error {
  override name = 'OperationError';
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
