// STOMP 1.2 framing (https://stomp.github.io/stomp-specification-1.2.html):
// an incremental parser with hard limits and an encoder. Pure: no sockets.
// Written here because no npm package offers a maintained server side of
// STOMP 1.2 over a raw socket (stompit's Server announces 1.1 and has no
// frame-size or header-count caps; stomp-broker-js is 1.1 over WebSocket).

export interface StompFrame {
  command: string;
  /** First occurrence wins (spec 1.2, "Repeated Header Entries"). */
  headers: Map<string, string>;
  body: Buffer;
}

export interface FrameLimits {
  /** Whole frame: command, headers and body. */
  maxFrameBytes: number;
  maxHeaders: number;
  /** One header line, escaped. */
  maxHeaderLineBytes: number;
}

export const DEFAULT_FRAME_LIMITS: FrameLimits = {
  maxFrameBytes: 1024 * 1024,
  maxHeaders: 64,
  maxHeaderLineBytes: 8 * 1024,
};

/** Every command the spec defines, client and server side (used to detect STOMP). */
export const STOMP_COMMANDS = [
  'CONNECT',
  'STOMP',
  'SEND',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'ACK',
  'NACK',
  'BEGIN',
  'COMMIT',
  'ABORT',
  'DISCONNECT',
  'CONNECTED',
  'MESSAGE',
  'RECEIPT',
  'ERROR',
] as const;

const LONGEST_COMMAND = Math.max(...STOMP_COMMANDS.map((c) => c.length));

export class FrameError extends Error {
  constructor(
    message: string,
    /** The command of the frame being parsed, when it was known. */
    readonly command?: string,
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;

/** CONNECT, STOMP and CONNECTED headers are not escaped (spec 1.2, "Value Encoding"). */
function escapesApply(command: string): boolean {
  return command !== 'CONNECT' && command !== 'STOMP' && command !== 'CONNECTED';
}

function unescapeValue(raw: string, command: string): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i];
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = raw[++i];
    if (next === 'n') out += '\n';
    else if (next === 'r') out += '\r';
    else if (next === 'c') out += ':';
    else if (next === '\\') out += '\\';
    else throw new FrameError(`invalid escape sequence \\${next ?? ''} in a header`, command);
  }
  return out;
}

function escapeValue(value: string): string {
  return value.replace(/[\\\r\n:]/g, (c) =>
    c === '\\' ? '\\\\' : c === '\r' ? '\\r' : c === '\n' ? '\\n' : '\\c',
  );
}

/** "Is `buf` the start of a STOMP frame, an HTTP request, or too short to tell?" */
export function detectStomp(buf: Buffer): 'stomp' | 'other' | 'undecided' {
  // Heart-beat EOLs may precede the first frame.
  let i = 0;
  while (i < buf.length && (buf[i] === LF || buf[i] === CR)) i++;
  if (i > 4) return 'other';
  const rest = buf.subarray(i, i + LONGEST_COMMAND + 2).toString('latin1');
  let prefix = false;
  for (const cmd of STOMP_COMMANDS) {
    if (rest.startsWith(`${cmd}\n`) || rest.startsWith(`${cmd}\r\n`)) return 'stomp';
    if (`${cmd}\r\n`.startsWith(rest) || `${cmd}\n`.startsWith(rest)) prefix = true;
  }
  return prefix ? 'undecided' : 'other';
}

/**
 * Turns a byte stream into frames. push() returns what completed; it throws
 * FrameError on malformed input or a broken limit, after which the parser
 * must not be used again (the session answers ERROR and closes).
 */
export class FrameParser {
  private buf: Buffer = Buffer.alloc(0);
  private readonly limits: FrameLimits;

  constructor(limits: Partial<FrameLimits> = {}) {
    this.limits = { ...DEFAULT_FRAME_LIMITS, ...limits };
  }

  /** Frames completed by this chunk; `heartbeats` counts the EOLs seen between frames. */
  push(chunk: Buffer): { frames: StompFrame[]; heartbeats: number } {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: StompFrame[] = [];
    let heartbeats = 0;
    for (;;) {
      let i = 0;
      while (i < this.buf.length && (this.buf[i] === LF || this.buf[i] === CR)) {
        if (this.buf[i] === LF) heartbeats++;
        i++;
      }
      if (i > 0) this.buf = this.buf.subarray(i);
      if (this.buf.length === 0) break;
      const frame = this.parseOne();
      if (frame === null) break;
      frames.push(frame);
    }
    return { frames, heartbeats };
  }

  /** Bytes held for an incomplete frame. */
  get pending(): number {
    return this.buf.length;
  }

  private parseOne(): StompFrame | null {
    const buf = this.buf;
    const { maxFrameBytes, maxHeaders, maxHeaderLineBytes } = this.limits;
    let pos = 0;
    let command: string | undefined;
    const headers = new Map<string, string>();
    let headerCount = 0;
    // Command and header lines.
    for (;;) {
      const lf = buf.indexOf(LF, pos);
      const lineLimit = command === undefined ? LONGEST_COMMAND + 1 : maxHeaderLineBytes + 1;
      if (lf === -1) {
        if (buf.length - pos > lineLimit) {
          throw new FrameError(
            command === undefined ? 'unknown command' : `header line longer than ${maxHeaderLineBytes} bytes`,
            command,
          );
        }
        if (buf.length > maxFrameBytes)
          throw new FrameError(`frame larger than ${maxFrameBytes} bytes`, command);
        return null;
      }
      let end = lf;
      if (end > pos && buf[end - 1] === CR) end--;
      if (end - pos > lineLimit) {
        throw new FrameError(
          command === undefined ? 'unknown command' : `header line longer than ${maxHeaderLineBytes} bytes`,
          command,
        );
      }
      const line = buf.subarray(pos, end);
      pos = lf + 1;
      if (pos > maxFrameBytes) throw new FrameError(`frame larger than ${maxFrameBytes} bytes`, command);
      if (command === undefined) {
        const c = line.toString('latin1');
        if (!(STOMP_COMMANDS as readonly string[]).includes(c)) {
          throw new FrameError(`unknown command ${JSON.stringify(c.slice(0, 20))}`);
        }
        command = c;
        continue;
      }
      if (line.length === 0) break;
      if (line.includes(NUL)) throw new FrameError('NUL byte in a header', command);
      if (++headerCount > maxHeaders) throw new FrameError(`more than ${maxHeaders} headers`, command);
      const text = line.toString('utf8');
      const colon = text.indexOf(':');
      if (colon <= 0) throw new FrameError('header line without a name and a colon', command);
      const rawName = text.slice(0, colon);
      const rawValue = text.slice(colon + 1);
      const escaped = escapesApply(command);
      if (escaped && rawValue.includes(':')) {
        throw new FrameError('unescaped colon in a header value (use \\c)', command);
      }
      const name = escaped ? unescapeValue(rawName, command) : rawName;
      const value = escaped ? unescapeValue(rawValue, command) : rawValue;
      if (!headers.has(name)) headers.set(name, value);
    }
    // Body: content-length octets then NUL, or up to the first NUL.
    const cl = headers.get('content-length');
    let bodyEnd: number;
    if (cl !== undefined) {
      if (!/^\d{1,10}$/.test(cl)) throw new FrameError('content-length must be a decimal number', command);
      const n = Number(cl);
      if (pos + n + 1 > maxFrameBytes)
        throw new FrameError(`frame larger than ${maxFrameBytes} bytes`, command);
      if (buf.length < pos + n + 1) return null;
      if (buf[pos + n] !== NUL) {
        throw new FrameError('frame does not end with NUL after content-length octets', command);
      }
      bodyEnd = pos + n;
    } else {
      const nul = buf.indexOf(NUL, pos);
      if (nul === -1) {
        if (buf.length + 1 > maxFrameBytes)
          throw new FrameError(`frame larger than ${maxFrameBytes} bytes`, command);
        return null;
      }
      bodyEnd = nul;
    }
    const body = Buffer.from(buf.subarray(pos, bodyEnd));
    this.buf = buf.subarray(bodyEnd + 1);
    return { command, headers, body };
  }
}

/** One frame on the wire. Header values are escaped except in CONNECTED; content-length is always set. */
export function encodeFrame(
  command: string,
  headers: Iterable<readonly [string, string]>,
  body: Buffer | string = '',
): Buffer {
  const esc = escapesApply(command) ? escapeValue : (v: string) => v.replace(/[\r\n]/g, ' ');
  let head = `${command}\n`;
  for (const [k, v] of headers) {
    if (k === 'content-length') continue;
    head += `${esc(k)}:${esc(v)}\n`;
  }
  // One allocation for the common case, a JSON text body.
  if (typeof body === 'string')
    return Buffer.from(`${head}content-length:${Buffer.byteLength(body)}\n\n${body}\0`, 'utf8');
  head += `content-length:${body.length}\n\n`;
  return Buffer.concat([Buffer.from(head, 'utf8'), body, Buffer.from([NUL])]);
}

/** Escaped `name:value` lines, built once and reused for many frames (e.g. per subscription). */
export function encodeHeaderLines(headers: Iterable<readonly [string, string]>): string {
  let out = '';
  for (const [k, v] of headers) out += `${escapeValue(k)}:${escapeValue(v)}\n`;
  return out;
}

/** A frame (not CONNECTED) from pre-encoded header lines, more headers and a text body. */
export function encodeFrameFrom(
  command: string,
  headerLines: string,
  extra: Iterable<readonly [string, string]>,
  body: string,
): Buffer {
  return Buffer.from(
    `${command}\n${headerLines}${encodeHeaderLines(extra)}content-length:${Buffer.byteLength(body)}\n\n${body}\0`,
    'utf8',
  );
}

export const HEARTBEAT = Buffer.from('\n');
