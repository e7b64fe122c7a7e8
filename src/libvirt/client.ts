// Typed libvirt calls and events over LibvirtConnection, plus the connection
// lifecycle: auth + open, keepalive, event callback registration, and
// reconnect with exponential backoff when libvirtd goes away.

import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { type CallOptions, DEFAULT_CALL_TIMEOUT_MS, LibvirtConnection } from './connection.js';
import { LibvirtConnectionError, LibvirtError, LibvirtNotConnectedError } from './errors.js';
import { bodyReader, DEFAULT_MAX_PACKET_BYTES, type Packet } from './packet.js';
import {
  AuthType,
  DOMAIN_MIN_BYTES,
  type DomainEventMessage,
  EventIdForKind,
  FEATURE_PROGRAM_KEEPALIVE,
  JOB_STATS_MAX,
  OPTIONAL_EVENT_KINDS,
  Proc,
  QEMU_PROGRAM,
  QemuProc,
  readDomain,
  readDomainEvent,
  readTypedParams,
  UUID_BYTES,
  uuidToBytes,
  writeDomain,
} from './protocol.js';
import type { DomainRef, DomainStateInfo, JobStats, LibvirtApi, LibvirtClientEvents } from './types.js';
import type { XdrReader, XdrWriter } from './xdr.js';

export const MODULAR_SOCKET_PATH = '/run/libvirt/virtqemud-sock';
export const MONOLITHIC_SOCKET_PATH = '/run/libvirt/libvirt-sock';

/** virtqemud's socket on hosts with modular daemons, else libvirtd's. */
export function defaultSocketPath(): string {
  return existsSync(MODULAR_SOCKET_PATH) ? MODULAR_SOCKET_PATH : MONOLITHIC_SOCKET_PATH;
}

export interface ReconnectOptions {
  initialDelayMs: number;
  maxDelayMs: number;
}

export interface LibvirtClientOptions {
  socketPath?: string;
  uri?: string;
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** 0 disables our pings (we still answer the server's). */
  keepaliveIntervalMs?: number;
  keepaliveCount?: number;
  reconnect?: ReconnectOptions | false;
  maxPacketBytes?: number;
  /** How long close() waits for libvirtd to answer calls still in flight. */
  closeDrainMs?: number;
}

const DEFAULTS = {
  uri: 'qemu:///system',
  keepaliveIntervalMs: 5_000,
  keepaliveCount: 5,
  // Quick calls are the risk (they finish while libvirtd runs the close hook); a call
  // slower than this lands inside that millisecond window only by rare chance.
  closeDrainMs: 2_000,
  reconnect: { initialDelayMs: 250, maxDelayMs: 15_000 } as ReconnectOptions,
};

type EventKind = DomainEventMessage['kind'];
const EVENT_KINDS = Object.keys(EventIdForKind) as EventKind[];

const readUint = (r: XdrReader) => r.readUint();
const readRetDomain = (r: XdrReader) => readDomain(r);

export class LibvirtClient extends EventEmitter<LibvirtClientEvents> implements LibvirtApi {
  private conn: LibvirtConnection | null = null;
  private closing = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private sizeChangeEvents = false;
  private readonly socketPath: string;
  private readonly uri: string;

  private constructor(private readonly opts: LibvirtClientOptions) {
    super();
    this.socketPath = opts.socketPath ?? defaultSocketPath();
    this.uri = opts.uri ?? DEFAULTS.uri;
  }

  /** Opens, authenticates and subscribes to events; rejects if the first attempt fails. */
  static async connect(opts: LibvirtClientOptions = {}): Promise<LibvirtClient> {
    const client = new LibvirtClient(opts);
    await client.establish();
    return client;
  }

  // Plain generic signatures (as in LibvirtApi), so callers can write generic helpers over event names.
  override on<K extends keyof LibvirtClientEvents>(
    event: K,
    listener: (...args: LibvirtClientEvents[K]) => void,
  ): this {
    return super.on(event, listener as never);
  }

  override off<K extends keyof LibvirtClientEvents>(
    event: K,
    listener: (...args: LibvirtClientEvents[K]) => void,
  ): this {
    return super.off(event, listener as never);
  }

  get connected(): boolean {
    return this.conn !== null && !this.conn.closed;
  }

  get memoryDeviceEvents(): boolean {
    return this.sizeChangeEvents;
  }

  // ---- typed calls ----

  async getLibVersion(): Promise<number> {
    return this.call(Proc.CONNECT_GET_LIB_VERSION, undefined, (r) => r.readUhyperNumber());
  }

  async getVersion(): Promise<number> {
    return this.call(Proc.CONNECT_GET_VERSION, undefined, (r) => r.readUhyperNumber());
  }

  async getHostname(): Promise<string> {
    return this.call(Proc.CONNECT_GET_HOSTNAME, undefined, (r) => r.readString());
  }

  async listAllDomains(flags = 0): Promise<DomainRef[]> {
    return this.call(
      Proc.CONNECT_LIST_ALL_DOMAINS,
      (w) => w.writeInt(1).writeUint(flags),
      (r) => {
        const domains = r.readArray(readDomain, 1 << 20, DOMAIN_MIN_BYTES);
        r.readUint(); // ret: the count again
        return domains;
      },
    );
  }

  async lookupByUUID(uuid: string): Promise<DomainRef> {
    const bytes = uuidToBytes(uuid);
    return this.call(Proc.DOMAIN_LOOKUP_BY_UUID, (w) => w.writeOpaqueFixed(bytes, UUID_BYTES), readRetDomain);
  }

  async getXMLDesc(dom: DomainRef, flags = 0): Promise<string> {
    return this.call(
      Proc.DOMAIN_GET_XML_DESC,
      (w) => {
        writeDomain(w, dom);
        w.writeUint(flags);
      },
      (r) => r.readString(),
    );
  }

  async getState(dom: DomainRef): Promise<DomainStateInfo> {
    return this.call(
      Proc.DOMAIN_GET_STATE,
      (w) => {
        writeDomain(w, dom);
        w.writeUint(0);
      },
      (r) => ({ state: r.readInt(), reason: r.readInt() }),
    );
  }

  async getJobStats(dom: DomainRef): Promise<JobStats> {
    return this.call(
      Proc.DOMAIN_GET_JOB_STATS,
      (w) => {
        writeDomain(w, dom);
        w.writeUint(0);
      },
      (r) => ({ type: r.readInt(), params: readTypedParams(r, JOB_STATS_MAX) }),
    );
  }

  async attachDeviceFlags(dom: DomainRef, xml: string, flags: number): Promise<void> {
    await this.call(Proc.DOMAIN_ATTACH_DEVICE_FLAGS, (w) => writeDomainXmlFlags(w, dom, xml, flags));
  }

  /**
   * May resolve while the guest still holds the device (libvirt waits ~5 s),
   * or reject with "unplug of device was rejected by the guest": watch events.
   */
  async detachDeviceFlags(dom: DomainRef, xml: string, flags: number): Promise<void> {
    await this.call(Proc.DOMAIN_DETACH_DEVICE_FLAGS, (w) => writeDomainXmlFlags(w, dom, xml, flags));
  }

  /** Resolves once QEMU took the change; a virtio-mem resize then proceeds in the guest (watch memoryDeviceSizeChange). */
  async updateDeviceFlags(dom: DomainRef, xml: string, flags: number): Promise<void> {
    await this.call(Proc.DOMAIN_UPDATE_DEVICE_FLAGS, (w) => writeDomainXmlFlags(w, dom, xml, flags));
  }

  async setMetadata(
    dom: DomainRef,
    type: number,
    metadata: string | null,
    key: string | null,
    uri: string | null,
    flags: number,
  ): Promise<void> {
    await this.call(Proc.DOMAIN_SET_METADATA, (w) => {
      writeDomain(w, dom);
      w.writeInt(type);
      w.writeOptionalString(metadata);
      w.writeOptionalString(key);
      w.writeOptionalString(uri);
      w.writeUint(flags);
    });
  }

  async getMetadata(dom: DomainRef, type: number, uri: string | null, flags: number): Promise<string> {
    return this.call(
      Proc.DOMAIN_GET_METADATA,
      (w) => {
        writeDomain(w, dom);
        w.writeInt(type);
        w.writeOptionalString(uri);
        w.writeUint(flags);
      },
      (r) => r.readString(),
    );
  }

  async defineXML(xml: string): Promise<DomainRef> {
    return this.call(Proc.DOMAIN_DEFINE_XML, (w) => w.writeString(xml), readRetDomain);
  }

  async createXML(xml: string, flags = 0): Promise<DomainRef> {
    return this.call(Proc.DOMAIN_CREATE_XML, (w) => w.writeString(xml).writeUint(flags), readRetDomain);
  }

  async destroy(dom: DomainRef): Promise<void> {
    await this.call(Proc.DOMAIN_DESTROY, (w) => writeDomain(w, dom));
  }

  async undefine(dom: DomainRef): Promise<void> {
    await this.call(Proc.DOMAIN_UNDEFINE, (w) => writeDomain(w, dom));
  }

  /**
   * virDomainQemuAgentCommand: passes one guest-agent JSON command through
   * libvirt and resolves with the agent's JSON reply. `timeoutS` is libvirt's
   * wait for the agent (AgentTimeout.* or seconds); our own call deadline is
   * a little longer so libvirt's error, not ours, names a silent agent.
   */
  async qemuAgentCommand(dom: DomainRef, cmd: string, timeoutS: number, flags = 0): Promise<string | null> {
    return this.call(
      QemuProc.DOMAIN_AGENT_COMMAND,
      (w) => {
        writeDomain(w, dom);
        w.writeString(cmd);
        w.writeInt(timeoutS);
        w.writeUint(flags);
      },
      (r) => r.readOptionalString(),
      { prog: QEMU_PROGRAM, ...(timeoutS > 0 ? { timeoutMs: (timeoutS + 5) * 1000 } : {}) },
    );
  }

  /**
   * Stops reconnecting, lets libvirtd answer what it is still working on, says
   * goodbye and closes the socket. The wait is for libvirtd 9.0 (Debian 12):
   * a client that leaves while a worker thread is finishing one of its calls
   * makes the daemon run its per-client close hook twice at once, and it
   * segfaults (docs/design.md, "libvirtd's close race").
   */
  async close(): Promise<void> {
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const conn = this.conn;
    this.conn = null;
    if (!conn || conn.closed) return;
    await conn.drain(this.opts.closeDrainMs ?? DEFAULTS.closeDrainMs);
    try {
      await conn.call(Proc.CONNECT_CLOSE, undefined, undefined, { timeoutMs: 2_000 });
    } catch {
      // closing anyway
    }
    conn.close();
  }

  // ---- plumbing ----

  private call<T = void>(
    proc: number,
    write?: (w: XdrWriter) => void,
    read?: (r: XdrReader) => T,
    opts?: CallOptions,
  ): Promise<T> {
    const conn = this.conn;
    if (!conn || conn.closed) {
      const why = this.closing ? 'client closed' : 'libvirtd connection lost, reconnecting';
      return Promise.reject(new LibvirtNotConnectedError(`not connected to libvirtd (${why})`));
    }
    return conn.call(proc, write, read, opts);
  }

  /** One connection attempt: open, auth, keepalive, events. The client adopts it only if all succeed. */
  private async establish(): Promise<void> {
    const conn = await LibvirtConnection.open({
      socketPath: this.socketPath,
      callTimeoutMs: this.opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      maxPacketBytes: this.opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES,
    });
    const callbacks = new Map<number, EventKind>();
    let sizeChangeEvents = false;
    // Events can arrive as soon as the first callback is registered.
    conn.on('message', (p) => this.onMessage(conn, callbacks, p));
    try {
      await this.handshake(conn);
      const supportsKeepalive = await conn.call(
        Proc.CONNECT_SUPPORTS_FEATURE,
        (w) => w.writeInt(FEATURE_PROGRAM_KEEPALIVE),
        (r) => r.readInt(),
      );
      const interval = this.opts.keepaliveIntervalMs ?? DEFAULTS.keepaliveIntervalMs;
      if (supportsKeepalive === 1 && interval > 0) {
        conn.startKeepalive(interval, this.opts.keepaliveCount ?? DEFAULTS.keepaliveCount);
      }
      for (const kind of EVENT_KINDS) {
        let id: number;
        try {
          id = await conn.call(
            Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
            (w) => w.writeInt(EventIdForKind[kind]).writeUint(0), // dom = NULL: all domains
            (r) => r.readInt(),
          );
        } catch (e) {
          // An older libvirtd refuses event IDs it does not know; the connection is still good.
          if (OPTIONAL_EVENT_KINDS.has(kind) && e instanceof LibvirtError) continue;
          throw e;
        }
        callbacks.set(id, kind);
        if (kind === 'memoryDeviceSizeChange') sizeChangeEvents = true;
      }
    } catch (e) {
      conn.close('handshake failed');
      throw e;
    }
    if (this.closing) {
      conn.close();
      throw new LibvirtConnectionError('client closed while connecting');
    }
    if (conn.closed) throw new LibvirtConnectionError('libvirtd closed the connection during setup');
    this.conn = conn;
    this.sizeChangeEvents = sizeChangeEvents;
    conn.once('close', (err) => this.onConnectionLost(conn, err));
  }

  private async handshake(conn: LibvirtConnection): Promise<void> {
    const types = await conn.call(Proc.AUTH_LIST, undefined, (r) => r.readArray(readUint, 20));
    if (types.length > 0 && !types.includes(AuthType.NONE)) {
      if (types.includes(AuthType.POLKIT)) {
        const complete = await conn.call(Proc.AUTH_POLKIT, undefined, (r) => r.readInt());
        if (complete !== 1) throw new LibvirtError('polkit authentication did not complete', 0, 0);
      } else {
        throw new LibvirtError(
          `libvirtd requires an unsupported auth type (offered: ${types.join(', ')})`,
          0,
          0,
        );
      }
    }
    await conn.call(Proc.CONNECT_OPEN, (w) => w.writeOptionalString(this.uri).writeUint(0));
  }

  private onMessage(conn: LibvirtConnection, callbacks: Map<number, EventKind>, p: Packet): void {
    let ev: DomainEventMessage | null;
    try {
      ev = readDomainEvent(p.header.proc, bodyReader(p));
    } catch (e) {
      conn.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (!ev || callbacks.get(ev.callbackId) !== ev.kind) return;
    try {
      if (ev.kind === 'lifecycle') {
        this.emit('lifecycle', { domain: ev.domain, event: ev.event, detail: ev.detail });
      } else if (ev.kind === 'memoryDeviceSizeChange') {
        this.emit('memoryDeviceSizeChange', { domain: ev.domain, alias: ev.alias, sizeKiB: ev.sizeKiB });
      } else {
        this.emit(ev.kind, { domain: ev.domain, alias: ev.alias });
      }
    } catch (e) {
      // A throwing listener is the caller's bug, not a protocol error: don't
      // tear the connection down for it; surface it as an uncaught exception.
      process.nextTick(() => {
        throw e;
      });
    }
  }

  private onConnectionLost(conn: LibvirtConnection, err: Error): void {
    if (this.conn !== conn) return;
    this.conn = null;
    if (this.closing) return;
    this.emit('disconnected', err);
    const rc = this.opts.reconnect === undefined ? DEFAULTS.reconnect : this.opts.reconnect;
    if (rc) this.scheduleReconnect(rc.initialDelayMs, rc);
  }

  private scheduleReconnect(delayMs: number, rc: ReconnectOptions): void {
    if (this.closing) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.establish().then(
        () => {
          if (!this.closing) this.emit('reconnected');
        },
        () => this.scheduleReconnect(Math.min(delayMs * 2, rc.maxDelayMs), rc),
      );
    }, delayMs);
  }
}

function writeDomainXmlFlags(w: XdrWriter, dom: DomainRef, xml: string, flags: number): void {
  writeDomain(w, dom);
  w.writeString(xml);
  w.writeUint(flags);
}
