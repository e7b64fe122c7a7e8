// Turns decoded JSON-RPC messages into handler calls and responses: envelope
// checks, method routing (our table of specs), params validation,
// the per-connection in-flight cap, error mapping and the per-request log
// line. Transport-agnostic: the WebSocket server and the REST adapter both
// call into it, so every path gets the same validation and logging.
import { randomUUID } from 'node:crypto';
import type { ValidateFunction } from 'ajv';
import type {
  JSONRPCError,
  JSONRPCErrorResponse,
  JSONRPCID,
  JSONRPCRequest,
  JSONRPCResponse,
} from 'json-rpc-2.0';
import type { Logger } from 'pino';
import { isRecord } from '../is-record.js';
import { RpcError, RpcErrorCode } from './errors.js';
import type { MethodContext, MethodSpec } from './method.js';
import type { RpcObserver } from './observer.js';
import { compileParams, createAjv, describeAjvError, truncate } from './validation.js';

/** Who is calling: one per WebSocket connection (or per REST request). */
export interface Caller {
  connectionId: string;
  remote: string;
  /** Logger bound to the connection (conn, remote). */
  log: Logger;
  inFlight: number;
  maxInFlight: number;
  /** True once the peer is gone; requests still complete and are logged. */
  gone: boolean;
  /** Rate limit of protocol-error log lines; created on first use. */
  logBudget?: { tokens: number; at: number; suppressed: number };
}

/** Per-outcome counts of batch entries refused before reaching a method. */
type Tally = Record<string, number>;

/** Protocol-error log lines per caller: a burst, then this many per second. */
const LOG_BURST = 50;
const LOG_PER_SECOND = 10;

export const DEFAULT_MAX_BATCH_ENTRIES = 64;

export interface DispatcherOptions {
  /** Largest batch; a bigger one is refused whole with one -32600. */
  maxBatchEntries?: number;
}

function firstNonSpace(text: string): number {
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

/**
 * True if the JSON array starting at text[start] has more than `limit`
 * top-level entries. Counts top-level commas without building anything and
 * stops at the first one over the limit, so it is cheap even for 1 MiB.
 */
export function batchExceeds(text: string, start: number, limit: number): boolean {
  let depth = 0;
  let commas = 0;
  for (let i = start; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip a string, with its escapes.
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      depth++;
    } else if (c === 0x5d || c === 0x7d) {
      if (--depth === 0) return false;
    } else if (c === 0x2c && depth === 1 && ++commas >= limit) {
      return true;
    }
  }
  return false;
}

export type Outcome = { ok: true; result: unknown } | { ok: false; error: JSONRPCError };

interface Entry {
  spec: MethodSpec;
  validate: ValidateFunction;
}

const EMPTY_PARAMS_SCHEMA = { type: 'object', properties: {}, additionalProperties: false };

function isId(v: unknown): v is JSONRPCID {
  return typeof v === 'string' || v === null || (typeof v === 'number' && Number.isFinite(v));
}

/** Why `msg` is not a valid JSON-RPC 2.0 request, or null if it is. */
function envelopeProblem(msg: unknown): string | null {
  if (!isRecord(msg)) return 'a request must be a JSON object';
  if (msg.jsonrpc !== '2.0') return 'jsonrpc must be "2.0"';
  if (typeof msg.method !== 'string') return 'method must be a string';
  if ('id' in msg && !isId(msg.id)) return 'id must be a string, a number or null';
  if ('params' in msg && typeof msg.params !== 'object') return 'params must be an object';
  if (msg.params === null) return 'params must be an object';
  if ('result' in msg || 'error' in msg) return 'a request must not carry result or error';
  return null;
}

function errorResponse(id: JSONRPCID, error: JSONRPCError): JSONRPCErrorResponse {
  return { jsonrpc: '2.0', id, error };
}

export class Dispatcher {
  private readonly entries = new Map<string, Entry>();
  private inFlightTotal = 0;
  private idleWaiters: (() => void)[] = [];
  private closing = false;
  private readonly observe: (method: string | null, code: number) => void;

  private readonly maxBatchEntries: number;

  constructor(specs: readonly MethodSpec[], observer: RpcObserver = {}, opts: DispatcherOptions = {}) {
    this.observe = observer.request ? observer.request.bind(observer) : () => {};
    this.maxBatchEntries = opts.maxBatchEntries ?? DEFAULT_MAX_BATCH_ENTRIES;
    const ajv = createAjv();
    for (const spec of specs) {
      if (this.entries.has(spec.name)) throw new Error(`method ${spec.name} registered twice`);
      const schema = spec.params ?? EMPTY_PARAMS_SCHEMA;
      const entry: Entry = { spec, validate: compileParams(ajv, spec.name, schema) };
      this.entries.set(spec.name, entry);
    }
  }

  hasMethod(name: string): boolean {
    return this.entries.has(name);
  }

  /** Requests currently running, over all callers. */
  get inFlight(): number {
    return this.inFlightTotal;
  }

  /** Stop taking new requests: they get SERVER_BUSY; running ones finish. */
  startClosing(): void {
    this.closing = true;
  }

  /** Resolves when no request is running. */
  whenIdle(): Promise<void> {
    if (this.inFlightTotal === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** One WebSocket text message: parse, then single request or batch. */
  handleText(
    text: string,
    caller: Caller,
  ): PromiseLike<JSONRPCResponse | JSONRPCResponse[] | null> | JSONRPCResponse | null {
    // An oversized batch is refused before JSON.parse builds it: a 1 MiB
    // message of tiny entries would otherwise cost a parse, one reply and one
    // log line per entry (issue 16: 56 MB of replies, seconds of blocked loop).
    const first = firstNonSpace(text);
    if (text.charCodeAt(first) === 0x5b && batchExceeds(text, first, this.maxBatchEntries)) {
      return this.batchTooLarge(caller, text.length);
    }
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this.protocolLog(caller, 'info', { outcome: 'parse-error', bytes: text.length }, 'rpc parse error');
      this.observe(null, RpcErrorCode.PARSE);
      return errorResponse(null, {
        code: RpcErrorCode.PARSE,
        message: 'parse error: invalid JSON',
        data: { detail: truncate((err as Error).message, 200) },
      });
    }
    if (!Array.isArray(msg)) return this.handleOne(msg, caller);
    if (msg.length === 0) {
      this.observe(null, RpcErrorCode.INVALID_REQUEST);
      this.protocolLog(
        caller,
        'info',
        { outcome: 'invalid-request', problem: 'empty batch' },
        'rpc invalid request',
      );
      return errorResponse(null, {
        code: RpcErrorCode.INVALID_REQUEST,
        message: 'invalid request: empty batch',
      });
    }
    if (msg.length > this.maxBatchEntries) return this.batchTooLarge(caller, text.length);
    return this.handleBatch(msg, caller);
  }

  private batchTooLarge(caller: Caller, bytes: number): JSONRPCResponse {
    const limit = this.maxBatchEntries;
    this.observe(null, RpcErrorCode.INVALID_REQUEST);
    this.protocolLog(
      caller,
      'warn',
      { outcome: 'invalid-request', problem: 'batch too large', limit, bytes },
      'rpc batch refused: too many entries',
    );
    return errorResponse(null, {
      code: RpcErrorCode.INVALID_REQUEST,
      message: `invalid request: a batch may hold at most ${limit} entries`,
      data: { rule: 'maxBatchEntries', limit },
    });
  }

  private async handleBatch(msgs: unknown[], caller: Caller): Promise<JSONRPCResponse[] | null> {
    // Entries that fail before reaching a method are counted, not logged one
    // by one: the batch gets one summary line.
    const tally: Tally = {};
    const replies = await Promise.all(msgs.map((m) => this.handleOne(m, caller, tally)));
    const out: JSONRPCResponse[] = [];
    for (const r of replies) if (r !== null) out.push(r);
    const refused = Object.values(tally).reduce((a, b) => a + b, 0);
    if (refused > 0) {
      const level = tally['notification-refused'] || tally.busy ? 'warn' : 'info';
      this.protocolLog(caller, level, { entries: msgs.length, refused: tally }, 'rpc batch: entries refused');
    } else if (caller.log.isLevelEnabled('debug')) {
      caller.log.debug({ entries: msgs.length, replies: out.length }, 'rpc batch');
    }
    return out.length > 0 ? out : null;
  }

  handleOne(
    msg: unknown,
    caller: Caller,
    tally?: Tally,
  ): PromiseLike<JSONRPCResponse | null> | JSONRPCResponse | null {
    const refuse = (
      outcome: string,
      level: 'info' | 'warn',
      fields: Record<string, unknown>,
      text: string,
    ): void => {
      if (tally) tally[outcome] = (tally[outcome] ?? 0) + 1;
      else this.protocolLog(caller, level, { ...fields, outcome }, text);
    };
    const problem = envelopeProblem(msg);
    if (problem !== null) {
      const id = isRecord(msg) && isId(msg.id) ? msg.id : null;
      refuse('invalid-request', 'info', { id, problem }, 'rpc invalid request');
      this.observe(null, RpcErrorCode.INVALID_REQUEST);
      return errorResponse(id, {
        code: RpcErrorCode.INVALID_REQUEST,
        message: `invalid request: ${problem}`,
      });
    }
    const req = msg as unknown as JSONRPCRequest;
    const method = truncate(req.method);
    const entry = this.entries.get(req.method);
    if (entry === undefined) {
      refuse('method-not-found', 'info', { method, id: req.id }, 'rpc call');
      this.observe(null, RpcErrorCode.METHOD_NOT_FOUND);
      if (req.id === undefined) return null;
      return errorResponse(req.id, {
        code: RpcErrorCode.METHOD_NOT_FOUND,
        message: `method not found: ${method}`,
        data: { method },
      });
    }
    if (req.id === undefined && entry.spec.readOnly !== true) {
      // A change nobody is told about (nor about its failure) is refused:
      // JSON-RPC forbids answering a notification, so the refusal goes out
      // as an invalid-request error with id null, like any unanswerable request.
      refuse('notification-refused', 'warn', { method }, 'rpc notification refused: method changes state');
      this.observe(req.method, RpcErrorCode.INVALID_REQUEST);
      return errorResponse(null, {
        code: RpcErrorCode.INVALID_REQUEST,
        message: `invalid request: ${method} changes state, so it must be sent with an id, not as a notification`,
        data: { method, rule: 'notification' },
      });
    }
    const busy = this.closing
      ? 'server is shutting down'
      : caller.inFlight >= caller.maxInFlight
        ? 'too many requests in flight'
        : null;
    if (busy !== null) {
      refuse(
        'busy',
        'warn',
        { method, id: req.id, inFlight: caller.inFlight },
        `rpc request refused: ${busy}`,
      );
      this.observe(req.method, RpcErrorCode.SERVER_BUSY);
      if (req.id === undefined) return null;
      return errorResponse(req.id, { code: RpcErrorCode.SERVER_BUSY, message: busy });
    }
    caller.inFlight++;
    this.inFlightTotal++;
    // Envelope checked and method found above: straight to it, not through
    // json-rpc-2.0's server, whose async layers checked the same again and
    // were held by every call in flight (bench/README.md, issue 12).
    return this.respond(entry, req, caller).then(
      (r) => {
        this.release(caller);
        return r;
      },
      (err: unknown) => {
        this.release(caller);
        return req.id === undefined
          ? null
          : errorResponse(req.id, this.unexpected(err, req.method, req.id, caller.log));
      },
    );
  }

  /**
   * Lines about requests that never reach a method: rate-limited per caller,
   * so a client cannot turn bad messages into a flood of log lines. The next
   * line that passes says how many were suppressed.
   */
  private protocolLog(
    caller: Caller,
    level: 'info' | 'warn',
    fields: Record<string, unknown>,
    text: string,
  ): void {
    caller.logBudget ??= { tokens: LOG_BURST, at: performance.now(), suppressed: 0 };
    const b = caller.logBudget;
    const now = performance.now();
    b.tokens = Math.min(LOG_BURST, b.tokens + ((now - b.at) / 1000) * LOG_PER_SECOND);
    b.at = now;
    if (b.tokens < 1) {
      b.suppressed++;
      return;
    }
    b.tokens--;
    const suppressed = b.suppressed;
    b.suppressed = 0;
    caller.log[level](suppressed > 0 ? { ...fields, suppressedLines: suppressed } : fields, text);
  }

  private release(caller: Caller): void {
    caller.inFlight--;
    if (--this.inFlightTotal === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Runs the request's method; its response, or null for a notification. */
  private async respond(
    entry: Entry,
    request: JSONRPCRequest,
    caller: Caller,
  ): Promise<JSONRPCResponse | null> {
    const id = request.id;
    const outcome = await this.execute(entry, id ?? null, request.params, caller);
    if (id === undefined) return null;
    return outcome.ok
      ? { jsonrpc: '2.0', id, result: outcome.result === undefined ? null : outcome.result }
      : errorResponse(id, outcome.error);
  }

  /**
   * Validate and run one method outside JSON-RPC framing (the REST adapter),
   * through the same validation, error mapping and logging.
   */
  async call(method: string, params: unknown, caller: Caller): Promise<Outcome> {
    const entry = this.entries.get(method);
    if (entry === undefined) {
      this.observe(null, RpcErrorCode.METHOD_NOT_FOUND);
      return {
        ok: false,
        error: { code: RpcErrorCode.METHOD_NOT_FOUND, message: `method not found: ${method}` },
      };
    }
    caller.inFlight++;
    this.inFlightTotal++;
    try {
      return await this.execute(entry, null, params, caller);
    } finally {
      this.release(caller);
    }
  }

  private async execute(entry: Entry, id: JSONRPCID, rawParams: unknown, caller: Caller): Promise<Outcome> {
    const t0 = performance.now();
    const spec = entry.spec;
    const params = rawParams === undefined ? {} : rawParams;
    let outcome: Outcome;
    let ctx: MethodContext | undefined;
    if (Array.isArray(params)) {
      outcome = {
        ok: false,
        error: {
          code: RpcErrorCode.INVALID_PARAMS,
          message: 'invalid params: named params only (params must be an object)',
          data: { field: 'params', rule: 'type', message: 'must be object' },
        },
      };
    } else if (!entry.validate(params)) {
      const first = entry.validate.errors?.[0];
      const problem = first
        ? describeAjvError(first)
        : { field: 'params', rule: 'schema', message: 'does not match the schema' };
      outcome = {
        ok: false,
        error: {
          code: RpcErrorCode.INVALID_PARAMS,
          message: `invalid params: ${problem.field} ${problem.message}`,
          data: { ...problem },
        },
      };
    } else {
      const log = caller.log.isLevelEnabled('debug')
        ? caller.log.child({ method: spec.name, id })
        : caller.log;
      ctx = {
        requestId: id,
        connectionId: caller.connectionId,
        remote: caller.remote,
        log,
      };
      try {
        outcome = { ok: true, result: await spec.handler(params, ctx) };
      } catch (err) {
        outcome = { ok: false, error: this.toError(err, spec.name, id, caller.log) };
      }
    }
    // Read only for a line that is written (not for a debug-level Host.ping).
    const ms = () => Math.round((performance.now() - t0) * 1000) / 1000;
    this.observe(spec.name, outcome.ok ? 0 : outcome.error.code);
    if (outcome.ok) {
      const level = spec.logLevel ?? 'info';
      if (level === 'info' || caller.log.isLevelEnabled('debug')) {
        caller.log[level](
          {
            method: spec.name,
            id,
            durationMs: ms(),
            outcome: 'ok',
            ...ctx?.logFields,
            ...(caller.gone ? { clientGone: true } : {}),
          },
          'rpc call',
        );
      }
    } else if (
      outcome.error.code !== RpcErrorCode.UNEXPECTED ||
      !('correlationId' in (outcome.error.data ?? {}))
    ) {
      caller.log.info(
        {
          method: spec.name,
          id,
          durationMs: ms(),
          outcome: 'error',
          code: outcome.error.code,
          error: outcome.error.message,
          reason: isRecord(outcome.error.data) ? outcome.error.data.reason : undefined,
          ...ctx?.logFields,
          ...(caller.gone ? { clientGone: true } : {}),
        },
        'rpc call',
      );
    } else {
      caller.log.error(
        {
          method: spec.name,
          id,
          durationMs: ms(),
          outcome: 'unexpected',
          code: outcome.error.code,
          correlationId: (outcome.error.data as Record<string, unknown>).correlationId,
          ...(caller.gone ? { clientGone: true } : {}),
        },
        'rpc call',
      );
    }
    return outcome;
  }

  private toError(err: unknown, method: string, id: JSONRPCID, log: Logger): JSONRPCError {
    if (err instanceof RpcError) {
      return err.data === undefined
        ? { code: err.code, message: err.message }
        : { code: err.code, message: err.message, data: err.data };
    }
    return this.unexpected(err, method, id, log);
  }

  /** Code 100 with a correlation id; the stack goes to the log only. */
  private unexpected(err: unknown, method: string, id: JSONRPCID | undefined, log: Logger): JSONRPCError {
    const correlationId = randomUUID();
    const e = err instanceof Error ? err : new Error(String(err));
    log.error({ err: e, correlationId, method: truncate(method), id }, 'unexpected error in rpc method');
    return { code: RpcErrorCode.UNEXPECTED, message: 'unexpected error', data: { correlationId } };
  }
}
