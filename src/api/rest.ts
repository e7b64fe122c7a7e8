// The feature page's REST request, verbatim: PUT /api/vms/{vmId} with
// <vm><memory>BYTES</memory><memory_policy><guaranteed>BYTES</guaranteed>
// </memory_policy></vm>, mapped to the registered VM.setMemory method through
// the dispatcher (same validation, errors and logging as JSON-RPC). Answers
// with a <vm> in bytes, or a <fault> with an HTTP status that fits the error
// (docs/design.md, "REST"). Registered on the server as an HTTP route.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { JSONRPCError } from 'json-rpc-2.0';
import type { Logger } from 'pino';
import { isRecord } from '../is-record.js';
import type { Caller, Outcome } from '../rpc/dispatcher.js';
import type { HttpRoute, HttpRouteContext } from '../rpc/http-route.js';
import { escapeXml } from '../xml-escape.js';
import { ErrorCode, isReasonOf, type Reason } from './contract.js';
import type { SetMemoryParams } from './schemas.js';

export const SET_MEMORY_METHOD = 'VM.setMemory';
const MIB = 1024 * 1024;
const VM_PATH = /^\/api\/vms\/([^/]+)$/;

/** A REST-level failure: HTTP status plus the fault's reason and detail. */
export class RestFault extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    readonly detail: string,
  ) {
    super(reason);
  }
}

/** Reasons that mean "the VM's state forbids it now": 409 Conflict. */
const CONFLICT_REASONS: readonly Reason[] = [
  'not-running',
  'guest-rejected',
  'not-movable',
  'already-unplugging',
  'vm-gone',
];

/** HTTP status for a JSON-RPC error from VM.setMemory (docs/design.md, "REST"). */
export function statusForError(err: JSONRPCError): number {
  const data: unknown = err.data;
  const raw = isRecord(data) ? data.reason : undefined;
  const reason = isReasonOf(err.code, raw) ? raw : undefined;
  if (err.code === ErrorCode.INVALID_PARAMS) return 400;
  if (err.code === ErrorCode.NO_SUCH_VM) return 404;
  if (err.code === ErrorCode.MIGRATING || (reason !== undefined && CONFLICT_REASONS.includes(reason))) {
    return 409;
  }
  if (reason === 'no-suitable-device' || reason === 'below-minimum') return 422;
  if (reason === 'timeout') return 504;
  return 500;
}

function faultDetail(err: JSONRPCError): string {
  const data: unknown = err.data;
  const d = typeof data === 'object' && data !== null ? (data as Record<string, unknown>) : {};
  if (err.code === ErrorCode.INVALID_PARAMS && typeof d.field === 'string') {
    return `${d.field}: ${String(d.message ?? '')} (rule ${String(d.rule ?? '')})`;
  }
  let detail = `code ${err.code}`;
  if (typeof d.reason === 'string') detail += `, reason ${d.reason}`;
  if (typeof d.correlationId === 'string') detail += `, correlation id ${d.correlationId}`;
  return detail;
}

export function faultXml(reason: string, detail: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<fault><reason>${escapeXml(reason)}</reason><detail>${escapeXml(detail)}</detail></fault>\n`;
}

export function vmXml(vmId: string, memoryBytes: number, guaranteedBytes: number): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<vm id="${escapeXml(vmId)}"><memory>${memoryBytes}</memory>` +
    `<memory_policy><guaranteed>${guaranteedBytes}</guaranteed></memory_policy></vm>\n`
  );
}

const parser = new XMLParser({
  ignoreAttributes: true,
  parseTagValue: false,
  processEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  trimValues: true,
});

function bytesOf(element: string, v: unknown): number {
  if (typeof v !== 'string' || !/^[0-9]+$/.test(v)) {
    throw new RestFault(
      400,
      `<${element}> must be a non-negative integer number of bytes`,
      `got ${describe(v)}`,
    );
  }
  const n = v.length > 16 ? Number.POSITIVE_INFINITY : Number(v);
  if (!Number.isSafeInteger(n)) {
    throw new RestFault(400, `<${element}> is too large`, `got ${v.slice(0, 40)}`);
  }
  return n;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'the element more than once';
  if (isRecord(v)) return 'nested elements';
  if (typeof v === 'string') return v === '' ? 'an empty element' : JSON.stringify(v.slice(0, 40));
  return 'nothing';
}

function onlyKeys(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k))
      throw new RestFault(
        400,
        `unsupported element <${k.slice(0, 40)}> in <${where}>`,
        `allowed: ${allowed.join(', ')}`,
      );
  }
}

/** The body's <vm> as VM.setMemory params, or a 400 RestFault. */
export function parseVmBody(vmId: string, body: string): SetMemoryParams {
  if (/<!DOCTYPE|<!ENTITY/i.test(body))
    throw new RestFault(400, 'DTDs and entities are not accepted', 'remove the DOCTYPE');
  const valid = XMLValidator.validate(body);
  if (valid !== true)
    throw new RestFault(400, 'malformed XML body', `${valid.err.msg} (line ${valid.err.line})`);
  let doc: unknown;
  try {
    doc = parser.parse(body);
  } catch (err) {
    throw new RestFault(400, 'malformed XML body', (err as Error).message);
  }
  if (!isRecord(doc) || !('vm' in doc))
    throw new RestFault(400, 'the body must be a <vm> element', 'root element is not <vm>');
  onlyKeys(doc, ['vm'], 'document');
  const vm = doc.vm;
  if (!isRecord(vm)) throw new RestFault(400, '<vm> must contain <memory>', `got ${describe(vm)}`);
  onlyKeys(vm, ['memory', 'memory_policy'], 'vm');
  if (!('memory' in vm)) throw new RestFault(400, '<memory> is required', 'the new memory size in bytes');
  const params: SetMemoryParams = { vmID: vmId, memory: bytesOf('memory', vm.memory) };
  if ('memory_policy' in vm) {
    const policy = vm.memory_policy;
    if (policy !== '') {
      if (!isRecord(policy))
        throw new RestFault(400, '<memory_policy> must contain <guaranteed>', `got ${describe(policy)}`);
      onlyKeys(policy, ['guaranteed'], 'memory_policy');
      if ('guaranteed' in policy) params.guaranteed = bytesOf('guaranteed', policy.guaranteed);
    }
  }
  return params;
}

export class RestApi implements HttpRoute {
  readonly prefix = '/api';
  private seq = 0;

  private send(res: ServerResponse, status: number, xml: string, extra: Record<string, string> = {}): void {
    if (res.headersSent) return;
    res.writeHead(status, {
      'Content-Type': 'application/xml; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(xml)),
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-store',
      ...extra,
    });
    res.end(xml);
  }

  private fault(res: ServerResponse, f: RestFault, log: Logger, extra: Record<string, string> = {}): void {
    log.info({ status: f.status, reason: f.reason, detail: f.detail }, 'rest request refused');
    this.send(res, f.status, faultXml(f.reason, f.detail), extra);
  }

  /** Handles any request whose path starts with /api/. */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    ctx: HttpRouteContext,
  ): Promise<void> {
    const connectionId = `rest-${++this.seq}`;
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const log = ctx.log.child({ conn: connectionId, remote });
    const m = VM_PATH.exec(path);
    if (m === null) {
      this.fault(res, new RestFault(404, 'not found', `no resource at ${path.slice(0, 200)}`), log);
      return;
    }
    if (req.method !== 'PUT') {
      this.fault(
        res,
        new RestFault(405, 'method not allowed', `${req.method ?? '?'} ${path.slice(0, 200)}: use PUT`),
        log,
        {
          Allow: 'PUT',
        },
      );
      return;
    }
    if (ctx.isClosing()) {
      this.fault(res, new RestFault(503, 'server is shutting down', 'retry later'), log, {
        Connection: 'close',
      });
      return;
    }
    try {
      let vmId: string;
      try {
        vmId = decodeURIComponent(m[1] ?? '');
      } catch {
        throw new RestFault(400, 'bad VM id in path', 'not valid percent-encoding');
      }
      const ctype = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      if (ctype !== 'application/xml' && ctype !== 'text/xml') {
        throw new RestFault(
          400,
          'Content-Type must be application/xml',
          `got ${JSON.stringify(ctype.slice(0, 80))}`,
        );
      }
      const force = forceOf(req.url);
      const body = await readBody(req, ctx.maxBodyBytes);
      const params = parseVmBody(vmId, body);
      if (force) params.force = true;
      const caller: Caller = { connectionId, remote, log, inFlight: 0, maxInFlight: 1, gone: false };
      // Removed again below: a keep-alive socket carries many requests.
      const onClose = () => {
        caller.gone = true;
      };
      req.socket.once('close', onClose);
      let outcome: Outcome;
      try {
        outcome = await ctx.dispatcher.call(SET_MEMORY_METHOD, params, caller);
      } finally {
        req.socket.off('close', onClose);
      }
      if (!outcome.ok) {
        const status = statusForError(outcome.error);
        this.fault(res, new RestFault(status, outcome.error.message, faultDetail(outcome.error)), log);
        return;
      }
      const r = outcome.result;
      if (!isRecord(r) || typeof r.memSize !== 'number' || typeof r.memGuaranteedSize !== 'number') {
        log.error({ result: typeof r }, `${SET_MEMORY_METHOD} result lacks memSize/memGuaranteedSize`);
        throw new RestFault(500, 'unexpected result from VM.setMemory', 'memSize/memGuaranteedSize missing');
      }
      this.send(res, 200, vmXml(vmId, r.memSize * MIB, r.memGuaranteedSize * MIB));
    } catch (err) {
      if (err instanceof RestFault) {
        this.fault(res, err, log, err.status === 413 ? { Connection: 'close' } : {});
        if (err.status === 413) req.resume();
        return;
      }
      log.error({ err }, 'rest request failed');
      this.send(res, 500, faultXml('unexpected error', 'see the daemon log'));
    }
  }
}

/** `?force=true`: VM.setMemory's `force` (plan as if every DIMM were movable). */
export function forceOf(url: string | undefined): boolean {
  const q = new URL(url ?? '/', 'http://vmhostd').searchParams.getAll('force');
  if (q.length === 0) return false;
  if (q.length === 1 && (q[0] === 'true' || q[0] === 'false')) return q[0] === 'true';
  throw new RestFault(400, 'bad query parameter force', 'force=true or force=false, once');
}

function readBody(req: IncomingMessage, max: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > max) {
    return Promise.reject(
      new RestFault(413, 'request body too large', `limit ${max} bytes, declared ${declared}`),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > max) {
        req.off('data', onData);
        reject(new RestFault(413, 'request body too large', `limit ${max} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (total <= max) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', reject);
  });
}
