// What the transport needs to know about one JSON-RPC method: its name, the
// schemas that validate params (and document the result), and the handler.
// The same specs drive validation, dispatch and the OpenRPC document.
import type { Logger } from 'pino';
import type { RawJson } from './raw-json.js';

/** JSON Schema draft-07 (the subset ajv supports in strict mode). */
export type JsonSchema = Record<string, unknown>;

export interface MethodContext {
  /** The JSON-RPC id; null for notifications and REST calls. */
  requestId: string | number | null;
  connectionId: string;
  /** "address:port" of the peer. */
  remote: string;
  log: Logger;
  /** Fields the handler adds to its request's one "rpc call" log line (e.g. the id of the operation it started). */
  logFields?: Record<string, unknown>;
}

export interface MethodSpec<P = unknown, R = unknown> {
  /** e.g. 'VM.hotunplugMemory' */
  name: string;
  summary: string;
  /** An object schema with properties/required/additionalProperties:false. */
  params: JsonSchema;
  result: JsonSchema;
  /** Published in the OpenRPC document. */
  errors?: { code: number; message: string }[];
  /**
   * Level of the per-request log line for successful calls (default 'info').
   * Use 'debug' for cheap, frequent reads such as Host.ping. Failures are
   * always logged at info or above.
   */
  logLevel?: 'debug' | 'info';
  /**
   * True when the method changes nothing. Only such methods may be called as
   * a JSON-RPC notification (no id): a change nobody hears about is refused.
   */
  readOnly?: boolean;
  /** May answer a RawJson: the result already serialised (raw-json.ts). */
  handler(params: P, ctx: MethodContext): Promise<R | RawJson<R>>;
}
