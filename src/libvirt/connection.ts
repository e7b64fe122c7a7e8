// The wire layer: one unix-socket connection to libvirtd. Routes replies to
// calls by serial (any number in flight), hands MESSAGE packets (events) to a
// listener, answers keepalive PINGs and detects a dead peer. Knows nothing of
// individual procedures beyond "encode args / decode ret".

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { LibvirtConnectionError, LibvirtError, LibvirtProtocolError, LibvirtTimeoutError } from './errors.js';
import {
  bodyReader,
  DEFAULT_MAX_PACKET_BYTES,
  encodePacket,
  finishPacket,
  MessageStatus,
  MessageType,
  type Packet,
  PacketParser,
  packetWriter,
} from './packet.js';
import {
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  KeepaliveProc,
  ProcName,
  QEMU_PROGRAM,
  QemuProcName,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  readRemoteError,
} from './protocol.js';
import type { XdrReader, XdrWriter } from './xdr.js';

export const DEFAULT_CALL_TIMEOUT_MS = 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A keepalive PING or PONG: a MESSAGE of libvirt's keepalive program, with no body. */
export function keepalivePacket(proc: number): Buffer {
  return encodePacket({
    prog: KEEPALIVE_PROGRAM,
    vers: KEEPALIVE_PROTOCOL_VERSION,
    proc,
    type: MessageType.MESSAGE,
    serial: 0,
    status: MessageStatus.OK,
  });
}

export interface ConnectionOptions {
  socketPath: string;
  /** Per-call timeout; libvirt blocks ~5 s inside a DIMM detach, so keep this well above. */
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxPacketBytes?: number;
}

export interface CallOptions {
  timeoutMs?: number;
  /** The RPC program: libvirt's remote program unless said (QEMU_PROGRAM for the QEMU-specific calls). */
  prog?: number;
}

interface Pending {
  prog: number;
  proc: number;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  decode: ((r: XdrReader) => unknown) | undefined;
  timer: NodeJS.Timeout | undefined;
}

export interface ConnectionEvents {
  /** A MESSAGE packet of the remote program (an event). */
  message: [Packet];
  /** The connection is gone (peer closed, protocol error, keepalive timeout, or close()). */
  close: [Error];
}

export class LibvirtConnection extends EventEmitter<ConnectionEvents> {
  private readonly parser: PacketParser;
  private readonly pending = new Map<number, Pending>();
  /**
   * Serials libvirtd has not answered yet, timed-out calls included: libvirtd
   * is still working on those, and closing under them is what crashes 9.0.
   */
  private readonly unanswered = new Set<number>();
  private drainWaiters: (() => void)[] = [];
  private serial = 0;
  private isClosed = false;
  private corked = false;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private receivedSinceTick = false;
  private missedTicks = 0;
  private readonly callTimeoutMs: number;

  private constructor(
    private readonly socket: net.Socket,
    readonly socketPath: string,
    opts: ConnectionOptions,
  ) {
    super();
    this.callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.parser = new PacketParser(opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES);
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) =>
      this.fail(new LibvirtConnectionError(`libvirt socket error: ${err.message}`)),
    );
    socket.on('close', () =>
      this.fail(new LibvirtConnectionError(`libvirtd closed the connection (${socketPath})`)),
    );
  }

  static open(opts: ConnectionOptions): Promise<LibvirtConnection> {
    const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path: opts.socketPath });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new LibvirtConnectionError(`connecting to ${opts.socketPath} timed out after ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(new LibvirtConnectionError(`cannot connect to ${opts.socketPath}: ${err.message}`));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new LibvirtConnection(socket, opts.socketPath, opts));
      });
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  /**
   * Calls a remote-program procedure. `write` encodes the args struct,
   * `read` decodes the ret struct (omit both for void).
   */
  call<T = void>(
    proc: number,
    write?: (w: XdrWriter) => void,
    read?: (r: XdrReader) => T,
    opts: CallOptions = {},
  ): Promise<T> {
    const prog = opts.prog ?? REMOTE_PROGRAM;
    if (this.isClosed) {
      return Promise.reject(
        new LibvirtConnectionError(`not connected to libvirtd (${procLabel(proc, prog)})`),
      );
    }
    this.serial = (this.serial + 1) >>> 0 || 1;
    const serial = this.serial;
    const w = packetWriter();
    try {
      write?.(w);
    } catch (e) {
      return Promise.reject(e);
    }
    const packet = finishPacket(w, {
      prog,
      vers: REMOTE_PROTOCOL_VERSION, // QEMU_PROTOCOL_VERSION is 1 too
      proc,
      type: MessageType.CALL,
      serial,
      status: MessageStatus.OK,
    });
    return new Promise<T>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? this.callTimeoutMs;
      const p: Pending = {
        prog,
        proc,
        resolve: resolve as (v: unknown) => void,
        reject,
        decode: read,
        timer: undefined,
      };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        p.timer = setTimeout(() => {
          if (this.pending.get(serial) !== p) return;
          this.pending.delete(serial);
          reject(new LibvirtTimeoutError(`${procLabel(proc, prog)} got no reply within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(serial, p);
      this.unanswered.add(serial);
      this.write(packet);
    });
  }

  /**
   * Calls issued in the same tick leave in one write: syscalls, not encoding,
   * dominate a call's cost (the daemon re-reads state and XML together, and
   * hundreds of VMs' operations can start at once).
   */
  private write(packet: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(packet);
  }

  /**
   * Keepalive as libvirt does it: every interval without any traffic from the
   * peer we send a PING; after `count` such silent intervals the peer is dead.
   */
  startKeepalive(intervalMs: number, count: number): void {
    this.stopKeepalive();
    if (intervalMs <= 0 || this.isClosed) return;
    this.receivedSinceTick = false;
    this.missedTicks = 0;
    this.keepaliveTimer = setInterval(() => {
      if (this.receivedSinceTick) {
        this.receivedSinceTick = false;
        this.missedTicks = 0;
        return;
      }
      this.missedTicks++;
      if (this.missedTicks > count) {
        this.fail(
          new LibvirtConnectionError(
            `libvirtd did not answer keepalive for ${intervalMs * count} ms; connection declared dead`,
          ),
        );
        return;
      }
      this.sendKeepalive(KeepaliveProc.PING);
    }, intervalMs);
    this.keepaliveTimer.unref();
  }

  stopKeepalive(): void {
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  /**
   * Resolves once libvirtd has answered every call sent on this connection
   * (true), or after `timeoutMs` (false). Closing right after is safe from
   * libvirtd 9.0's close race: no worker thread is still on our calls.
   */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.unanswered.size === 0 || this.isClosed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (drained: boolean) => {
        clearTimeout(timer);
        this.drainWaiters = this.drainWaiters.filter((w) => w !== wake);
        resolve(drained);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.drainWaiters.push(wake);
    });
  }

  private answered(serial: number): void {
    if (!this.unanswered.delete(serial) || this.unanswered.size > 0) return;
    for (const wake of [...this.drainWaiters]) wake();
  }

  /** Closes the connection; pending calls fail with LibvirtConnectionError. */
  close(reason = 'connection closed by client'): void {
    this.fail(new LibvirtConnectionError(reason));
  }

  /** Tears the connection down because of `err` (also used by the typed layer on a bad event). */
  fail(err: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopKeepalive();
    this.socket.destroy();
    this.unanswered.clear();
    for (const wake of [...this.drainWaiters]) wake();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      const e =
        err instanceof LibvirtConnectionError
          ? new LibvirtConnectionError(`${procLabel(p.proc)} failed: ${err.message}`)
          : new LibvirtConnectionError(`${procLabel(p.proc)} failed: connection dropped: ${err.message}`, {
              cause: err,
            });
      p.reject(e);
    }
    this.emit('close', err);
  }

  private sendKeepalive(proc: number): void {
    if (this.isClosed) return;
    this.write(keepalivePacket(proc));
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    let packets: Packet[];
    try {
      packets = this.parser.push(chunk);
    } catch (e) {
      this.fail(asProtocolError(e));
      return;
    }
    // Liveness counts whole messages, as libvirt's keepalive does: bytes that only feed a
    // packet which never completes (a corrupt length word) must not keep a dead stream alive.
    if (packets.length > 0) this.receivedSinceTick = true;
    for (const p of packets) {
      if (this.isClosed) return;
      try {
        this.dispatch(p);
      } catch (e) {
        this.fail(asProtocolError(e));
        return;
      }
    }
  }

  private dispatch(p: Packet): void {
    const h = p.header;
    if (h.prog === KEEPALIVE_PROGRAM) {
      if (h.proc === KeepaliveProc.PING) this.sendKeepalive(KeepaliveProc.PONG);
      return;
    }
    // The QEMU program only ever answers our calls (we register no QEMU monitor events).
    if (h.prog !== REMOTE_PROGRAM && !(h.prog === QEMU_PROGRAM && h.type === MessageType.REPLY)) {
      throw new LibvirtProtocolError(`unexpected program 0x${h.prog.toString(16)} in packet from libvirtd`);
    }
    if (h.vers !== REMOTE_PROTOCOL_VERSION) {
      throw new LibvirtProtocolError(`unexpected protocol version ${h.vers}`);
    }
    switch (h.type) {
      case MessageType.REPLY:
        this.onReply(p);
        return;
      case MessageType.MESSAGE:
        this.emit('message', p);
        return;
      case MessageType.STREAM:
        return; // we open no streams; nothing to route
      default:
        throw new LibvirtProtocolError(`unexpected message type ${h.type} from libvirtd`);
    }
  }

  private onReply(p: Packet): void {
    const h = p.header;
    this.answered(h.serial);
    const call = this.pending.get(h.serial);
    if (!call) return; // timed out earlier; the late reply is dropped
    if (call.proc !== h.proc || call.prog !== h.prog) {
      throw new LibvirtProtocolError(
        `reply for serial ${h.serial} names procedure ${h.proc} of program 0x${h.prog.toString(16)}, expected ${call.proc} of 0x${call.prog.toString(16)}`,
      );
    }
    this.pending.delete(h.serial);
    if (call.timer) clearTimeout(call.timer);
    const r = bodyReader(p);
    if (h.status === MessageStatus.OK) {
      let value: unknown;
      try {
        value = call.decode ? call.decode(r) : undefined;
        r.expectEnd(`${procLabel(call.proc, call.prog)} reply`);
      } catch (e) {
        const err = asProtocolError(e);
        call.reject(err);
        throw err;
      }
      call.resolve(value);
    } else if (h.status === MessageStatus.ERROR) {
      let e: ReturnType<typeof readRemoteError>;
      try {
        e = readRemoteError(r);
      } catch (err) {
        const perr = asProtocolError(err);
        call.reject(perr);
        throw perr;
      }
      call.reject(new LibvirtError(e.message ?? `libvirt error code ${e.code}`, e.code, e.domain, e.level));
    } else {
      const err = new LibvirtProtocolError(`reply with unexpected status ${h.status}`);
      call.reject(err);
      throw err;
    }
  }
}

function procLabel(proc: number, prog: number = REMOTE_PROGRAM): string {
  return (prog === QEMU_PROGRAM ? QemuProcName[proc] : ProcName[proc]) ?? `procedure ${proc}`;
}

function asProtocolError(e: unknown): Error {
  if (e instanceof LibvirtProtocolError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new LibvirtProtocolError(`malformed data from libvirtd: ${msg}`);
}
