// Accounting for sockets that are not (yet) WebSocket clients: just accepted,
// in the TLS handshake, sending request headers, or idle between HTTP
// requests. Before, idle sockets that send nothing filled Node's connection
// table until the headers timeout and locked every new client out (issue 16:
// 1,100 idle sockets, 0 of 15 clients got in over 30 s). Now:
//   - a socket that sends no byte within firstByteMs is closed;
//   - at most maxPending sockets are "served" (their requests are handled);
//     a newcomer is always served: when the table is full, the oldest socket
//     that has sent nothing (else the oldest idle one) is demoted to the
//     "tarpit" to make room;
//   - one source address (an IPv6 /64) may keep at most perAddress idle
//     sockets served: its next connection demotes its oldest idle one;
//   - a tarpitted socket is left open but holds no slot: it is closed at its
//     first-byte deadline, or when it makes a request while the table is
//     full (with room, it is served after all: a real client). Demoting rather
//     than closing matters: an attacker that reopens what we close would turn
//     every close into a new connection, a storm that fills the accept queue
//     in front of real clients. Only beyond TARPIT_FACTOR x maxPending are
//     tarpitted sockets closed early, oldest first.
// "Idle" means no request in progress for longer than a short grace, so a
// burst of fresh clients (all still sending their first request) never
// demotes one another through the per-address cap.
// Counts of dropped and demoted sockets are logged as one line per second at most.
import { isIPv6, type Socket } from 'node:net';
import type { Logger } from 'pino';

export interface SocketGuardLimits {
  firstByteMs: number;
  maxPending: number;
  perAddress: number;
}

interface Tracked {
  socket: Socket;
  addr: string;
  /** HTTP requests in progress on it; only idle sockets (0) are demoted. */
  busy: number;
  /** When it was accepted or its last request ended (performance.now()). */
  since: number;
  timer: NodeJS.Timeout | undefined;
}

type Counter = 'demoted' | 'perAddress' | 'firstByteTimeout' | 'tarpitRequest' | 'tarpitFull';

/** Tarpitted sockets kept open, as a multiple of maxPending. */
export const TARPIT_FACTOR = 8;

/** How long a socket may have no request in progress before it counts as idle. */
function graceMs(firstByteMs: number): number {
  return Math.min(250, firstByteMs / 2);
}

/** IPv4 (also v4-mapped) as is; IPv6 by its /64, which one host usually owns whole. */
export function addressKey(remote: string | undefined): string {
  if (remote === undefined) return '?';
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  if (v4?.[1]) return v4[1];
  if (!isIPv6(remote)) return remote;
  const [head = '', tail = ''] = remote.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = remote.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, '').toLowerCase())
    .join(':')}::/64`;
}

export class SocketGuard {
  /** Served sockets; insertion order = age, so the first match is the oldest. */
  private readonly served = new Map<Socket, Tracked>();
  private readonly tarpit = new Map<Socket, Tracked>();
  private readonly counts: Record<Counter, number> = {
    demoted: 0,
    perAddress: 0,
    firstByteTimeout: 0,
    tarpitRequest: 0,
    tarpitFull: 0,
  };
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: SocketGuardLimits,
    private readonly log: Logger,
    /** Told of each socket closed here (metrics): no first byte in time, or no room. */
    private readonly onDrop: (why: 'timeout' | 'limits') => void = () => {},
  ) {}

  /** Pre-WebSocket sockets held now (served + tarpitted). */
  get size(): number {
    return this.served.size + this.tarpit.size;
  }

  /** A new TCP connection: always served; may demote an older one to make room. */
  admit(socket: Socket): void {
    const addr = addressKey(socket.remoteAddress);
    const now = performance.now();
    const idleBefore = now - graceMs(this.limits.firstByteMs);
    let ownIdle = 0;
    let oldestOwn: Tracked | undefined;
    let oldestSilent: Tracked | undefined;
    let oldestIdle: Tracked | undefined;
    for (const t of this.served.values()) {
      if (t.busy > 0) continue;
      if (t.socket.bytesRead === 0) oldestSilent ??= t;
      if (t.since > idleBefore) continue;
      oldestIdle ??= t;
      if (t.addr === addr) {
        oldestOwn ??= t;
        ownIdle++;
      }
    }
    if (ownIdle >= this.limits.perAddress && oldestOwn) {
      this.demote(oldestOwn, 'perAddress');
    } else if (this.served.size >= this.limits.maxPending) {
      // Silent ones first (never sent a byte: the idle-socket attack), however
      // young; then sockets idle past the grace (slow or kept-alive ones).
      const victim = oldestSilent ?? oldestIdle;
      if (victim) this.demote(victim, 'demoted');
    }
    const t: Tracked = { socket, addr, busy: 0, since: now, timer: undefined };
    t.timer = setTimeout(() => {
      t.timer = undefined;
      if (socket.bytesRead === 0) {
        this.count('firstByteTimeout');
        this.onDrop('timeout');
        socket.destroy();
      }
    }, this.limits.firstByteMs);
    t.timer.unref();
    this.served.set(socket, t);
    socket.once('close', () => this.release(socket));
  }

  /**
   * An HTTP request (or upgrade, or STOMP) started on it (socket may be the
   * TLS socket over the tracked one). A tarpitted socket is served again if
   * there is room (a slow real client, demoted in a burst); otherwise it is
   * destroyed and this returns false.
   */
  requestStarted(socket: Socket): boolean {
    const raw = rawSocket(socket);
    const parked = this.tarpit.get(raw);
    if (parked) {
      if (this.served.size >= this.limits.maxPending) {
        this.count('tarpitRequest');
        this.onDrop('limits');
        this.release(raw);
        socket.destroy();
        return false;
      }
      this.tarpit.delete(raw);
      this.served.set(raw, parked);
    }
    const t = this.served.get(raw);
    if (t) t.busy++;
    return true;
  }

  requestEnded(socket: Socket): void {
    const t = this.served.get(rawSocket(socket));
    if (t && t.busy > 0 && --t.busy === 0) t.since = performance.now();
  }

  /** It became a WebSocket client: counted by the connection cap from now on. */
  upgraded(socket: Socket): void {
    this.release(rawSocket(socket));
  }

  close(): void {
    if (this.summaryTimer) clearTimeout(this.summaryTimer);
    this.flushSummary();
  }

  private release(socket: Socket): void {
    const t = this.served.get(socket) ?? this.tarpit.get(socket);
    if (!t) return;
    this.served.delete(socket);
    this.tarpit.delete(socket);
    if (t.timer) clearTimeout(t.timer);
  }

  private demote(t: Tracked, why: Counter): void {
    this.served.delete(t.socket);
    this.tarpit.set(t.socket, t);
    this.count(why);
    // A demoted socket that already sent bytes (slow headers, kept alive) is
    // not waiting for its first byte: nothing would ever close it here.
    if (t.socket.bytesRead > 0) {
      this.onDrop('limits');
      this.release(t.socket);
      t.socket.destroy();
    }
    if (this.tarpit.size > TARPIT_FACTOR * this.limits.maxPending) {
      const oldest = this.tarpit.values().next().value;
      if (oldest) {
        this.release(oldest.socket);
        oldest.socket.destroy();
        this.count('tarpitFull');
        this.onDrop('limits');
      }
    }
  }

  private count(what: Counter): void {
    this.counts[what]++;
    if (this.summaryTimer) return;
    this.summaryTimer = setTimeout(() => {
      this.summaryTimer = undefined;
      this.flushSummary();
    }, 1000);
    this.summaryTimer.unref();
  }

  private flushSummary(): void {
    const c = { ...this.counts };
    if (Object.values(c).every((n) => n === 0)) return;
    for (const k of Object.keys(this.counts) as Counter[]) this.counts[k] = 0;
    this.log.warn(
      { ...c, served: this.served.size, tarpitted: this.tarpit.size, limits: this.limits },
      'sockets without a request: dropped or tarpitted (idle, too many from one address, or room for newcomers)',
    );
  }
}

/** The TCP socket under a TLS socket (Node keeps it as _parent), or the socket itself. */
function rawSocket(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket })._parent ?? socket;
}
