// The daemon's logger: pino JSON lines to stdout (journald picks them up);
// pretty output for people only when asked, since it costs a worker thread.
// Lines are written asynchronously: a synchronous write per line was the
// largest single cost of an unplug under load (see bench/README.md).
//
// stdout may stall (a reader that stopped reading, a stuck journald) or break
// (EPIPE). Neither may keep the daemon from stopping: the destination is our
// own sonic-boom, not pino.destination(), so pino registers no exit hook
// whose flushSync retries forever (issue 16: a stop that never ended); the
// only flush is flushLogger's, bounded, and after its deadline what is still
// pending is abandoned. While stdout stalls, at most MAX_PENDING_BYTES are
// kept; further lines are dropped (a turn's lines together) and counted. A
// broken stdout ends logging.
//
// The lines of one turn of the event loop reach sonic-boom together, in the
// check phase (setImmediate), after the turn's replies and notifications
// have been written: an asynchronous write wakes a thread of libuv's pool,
// which on a VM costs tens of microseconds, and an unplug's lines came just
// before its reply (issue 12).
import { type Logger, pino } from 'pino';
import sonicBoomModule, { type SonicBoom, type SonicBoomOpts } from 'sonic-boom';

// The CommonJS module is the constructor itself; its typings describe it as a namespace.
const SonicBoomCtor = sonicBoomModule as unknown as new (opts: SonicBoomOpts) => SonicBoom;

/** Log bytes kept while stdout does not take them. */
export const MAX_PENDING_BYTES = 16 * 1024 * 1024;

interface Output {
  dest: SonicBoom;
  /** Lines of this turn, not yet handed to dest. */
  turn: string;
  scheduled: boolean;
  /** Set once flushLogger gave up: no more retries of a stalled write. */
  abandoned: boolean;
  broken: boolean;
  dropped: number;
}

/** sonic-boom's progress, which it keeps in underscored fields. */
interface SonicBoomState {
  _writing: boolean;
  _len: number;
}

const outputs = new WeakMap<Logger, Output>();

function idle(o: Output): boolean {
  const s = o.dest as unknown as SonicBoomState;
  return o.turn === '' && !s._writing && s._len === 0;
}

/** Hands this turn's lines to sonic-boom. */
function endTurn(o: Output): void {
  o.scheduled = false;
  const lines = o.turn;
  o.turn = '';
  if (lines !== '') o.dest.write(lines);
}

export function createLogger(opts: { level: string; pretty: boolean; name?: string; fd?: number }): Logger {
  const base = { level: opts.level, name: opts.name ?? 'vmhostd' };
  if (opts.pretty) {
    return pino({
      ...base,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:standard' } },
    });
  }
  const o: Output = {
    dest: undefined as unknown as SonicBoom,
    turn: '',
    scheduled: false,
    abandoned: false,
    broken: false,
    dropped: 0,
  };
  const dest = new SonicBoomCtor({
    fd: opts.fd ?? 1,
    sync: false,
    maxLength: MAX_PENDING_BYTES,
    retryEAGAIN: () => !o.abandoned,
  });
  o.dest = dest;
  dest.on('drop', (data: string) => {
    // A drop is a whole turn's lines (endTurn): count them, one per newline.
    for (let i = data.indexOf('\n'); i !== -1; i = data.indexOf('\n', i + 1)) o.dropped++;
  });
  dest.on('error', () => {
    // EPIPE or any write error: nobody reads these lines any more.
    o.broken = true;
    dest.write = () => true;
  });
  // pino's fatal() calls flushSync, which retries a stalled or broken
  // stdout for ever; the bounded flushLogger runs on every exit path instead.
  dest.flushSync = () => {};
  const log = pino(base, {
    write(line: string): void {
      if (o.broken) return;
      o.turn += line;
      if (o.scheduled) return;
      o.scheduled = true;
      setImmediate(() => endTurn(o));
    },
  });
  outputs.set(log, o);
  return log;
}

/** Lines dropped because stdout did not take them (0 for pretty output). */
export function droppedLogLines(log: Logger): number {
  return outputs.get(log)?.dropped ?? 0;
}

/**
 * Resolves once buffered lines are written, or after timeoutMs: a stalled or
 * broken stdout must not block exit. After the deadline the rest is abandoned.
 * Resolves true when everything was written.
 */
export function flushLogger(log: Logger, timeoutMs = 2000): Promise<boolean> {
  const o = outputs.get(log);
  if (o === undefined) {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      log.flush(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }
  if (o.broken) return Promise.resolve(false);
  endTurn(o);
  if (idle(o)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(t);
      o.dest.off('drain', onDrain);
      o.dest.off('error', onError);
      if (!ok) o.abandoned = true;
      resolve(ok);
    };
    const onDrain = () => {
      if (idle(o)) done(true);
    };
    const onError = () => done(false);
    const t = setTimeout(() => done(false), timeoutMs);
    o.dest.on('drain', onDrain);
    o.dest.once('error', onError);
  });
}
