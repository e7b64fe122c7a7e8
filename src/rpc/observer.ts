// What the transport tells an observer (the daemon's metrics) about the
// traffic it handles. Generic: a method is only the string a request named,
// and only when it names a registered method (so a client cannot mint
// unbounded label values).

/** Why a connection was refused before it became a client. */
export type RefusalReason = 'limits' | 'tls' | 'origin' | 'timeout';

export interface RpcObserver {
  /**
   * One JSON-RPC request answered or refused. `method` is null when the
   * request named no registered method (or could not be parsed); `code` is
   * 0 for success, else the JSON-RPC error code of the answer.
   */
  request?(method: string | null, code: number): void;
  /** A connection or upgrade refused before it became a client. */
  refused?(reason: RefusalReason): void;
}
