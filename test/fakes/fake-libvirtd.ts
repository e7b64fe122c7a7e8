// A fake libvirtd on a unix socket, speaking libvirt's real RPC protocol, for
// what real hardware cannot be made to do on demand: delays, rejecting or
// silent guests, dropped connections, stalls, malformed or oversized packets,
// thousands of domains. Domains are small records; XML is generated on
// demand in the shape libvirt 9 produces (checked against `virsh dumpxml`).

import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { keepalivePacket } from '../../src/libvirt/connection.js';
import {
  bodyReader,
  encodePacket,
  MessageStatus,
  MessageType,
  type Packet,
  PacketParser,
} from '../../src/libvirt/packet.js';
import {
  AuthType,
  type DomainEventMessage,
  EventIdForKind,
  FEATURE_PROGRAM_KEEPALIVE,
  KEEPALIVE_PROGRAM,
  KeepaliveProc,
  Proc,
  ProcName,
  QEMU_PROGRAM,
  QemuProc,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  readDomain,
  TypedParamType,
  UUID_BYTES,
  uuidFromBytes,
  writeDomain,
  writeDomainEvent,
  writeRemoteError,
  writeTypedParams,
} from '../../src/libvirt/protocol.js';
import { DomainAffect, type DomainRef, LifecycleEvent, MetadataType } from '../../src/libvirt/types.js';
import type { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';

export type UnplugBehaviour = 'release' | 'reject' | 'silent';

export interface FakeDimmSpec {
  alias: string;
  sizeMiB: number;
  node?: number;
  slot?: number;
}

/** A virtio-mem device (MiB). */
export interface FakeVirtioMemSpec {
  alias: string;
  sizeMiB: number;
  /** Default 2. */
  blockMiB?: number;
  /** Default 0. */
  requestedMiB?: number;
  /** Default: requestedMiB. */
  currentMiB?: number;
  node?: number;
}

/**
 * How the fake guest answers a new `requested`: 'follow' moves `current` there
 * in steps; 'stall' follows a shrink only down to `stallAtMiB` (as a guest with
 * unmovable pages does) and any grow fully; 'silent' never moves (no driver).
 */
export interface VirtioMemBehaviour {
  mode: 'follow' | 'stall' | 'silent';
  /** MiB per step (default 64). */
  stepMiB?: number;
  /** Between steps (default 20 ms). */
  stepMs?: number;
  stallAtMiB?: number;
  /** false: the device moves but no size-change event goes out (QEMU throttles them: one may come late). Default true. */
  events?: boolean;
}

export interface AddDomainOptions {
  name?: string;
  uuid?: string;
  /** Base memory (without DIMMs). */
  memoryMiB: number;
  maxMemoryMiB?: number;
  slots?: number;
  dimms?: FakeDimmSpec[];
  virtioMem?: FakeVirtioMemSpec[];
  virtioMemBehaviour?: VirtioMemBehaviour;
  running?: boolean;
  persistent?: boolean;
  unplug?: UnplugBehaviour;
  /** Delay before device-removed / device-removal-failed (default 20 ms). */
  eventDelayMs?: number;
  /** 'release': emit device-removed before the detach reply, as real libvirt does when the guest is quick. */
  eventBeforeReply?: boolean;
  /** 'silent': how long detach blocks before returning OK (real libvirt: ~5 s; default 50 ms). */
  silentDelayMs?: number;
  /** A guest agent (default: none, as a domain without the agent channel). */
  agent?: FakeGuestAgent;
}

/**
 * The guest agent behind libvirt's agent passthrough (virDomainQemuAgentCommand),
 * for what a real guest cannot do on demand. Without one (the default) the
 * call fails as libvirt does for a domain with no agent channel.
 * - 'answer': guest-get-memory-blocks and guest-file-open/read/close of
 *   /sys/devices/system/memory/{block_size_bytes, memoryN/valid_zones}, from `zones`;
 * - 'silent': the agent never answers (libvirt gives up after the call's timeout);
 * - 'files-blocked': guest-file-* disabled by the agent's policy (RHEL's default blocklist).
 */
export interface FakeGuestAgent {
  mode: 'answer' | 'silent' | 'files-blocked';
  /**
   * Per DIMM alias, the zone its blocks are online in ('offline': not onlined);
   * an array gives one per block. A DIMM not listed: 'Movable'.
   */
  zones?: Record<string, FakeZone | FakeZone[]>;
  /** Memory block size (MiB), default 128. */
  blockSizeMiB?: number;
}
export type FakeZone = 'Movable' | 'Normal' | 'offline';

/** An XML document a client sent (attach, detach, metadata or define), as received. */
export interface ReceivedXml {
  proc: string;
  uuid: string | null;
  xml: string;
  flags: number;
}

export type MalformedKind = 'length-too-small' | 'truncated-event' | 'bad-type' | 'bad-program' | 'garbage';

// virErrorDomain / virErrorNumber values the fake reports.
const FROM_QEMU = 10;
const FROM_DOMAIN = 20;
const ERR = {
  INTERNAL_ERROR: 1,
  OPERATION_FAILED: 9,
  NO_DOMAIN: 42,
  OPERATION_INVALID: 55,
  // The agent's errors: no channel, silence, and a command the agent refused.
  ARGUMENT_UNSUPPORTED: 74,
  AGENT_UNRESPONSIVE: 86,
  AGENT_COMMAND_FAILED: 96,
  NO_DOMAIN_METADATA: 80,
  DEVICE_MISSING: 99,
  XML_ERROR: 27,
  NO_SUPPORT: 3,
  CONFIG_UNSUPPORTED: 67,
  INVALID_ARG: 8,
} as const;

class FakeError extends Error {
  constructor(
    readonly code: number,
    readonly domain: number,
    message: string,
  ) {
    super(message);
  }
}

interface Dimm {
  alias: string;
  sizeMiB: number;
  node: number;
  slot: number;
  /** Guest-physical address above DIMM_BASE, MiB, once running: fixed for the DIMM's life, as QEMU's. */
  addrMiB?: number;
}

/**
 * Gives each running DIMM without an address the lowest free range that fits
 * (QEMU's memory-device address assignment), in slot order: removing a DIMM
 * leaves a hole and moves no other.
 */
function ensureAddrs(dimms: Dimm[]): void {
  const placed = dimms.filter((x) => x.addrMiB !== undefined);
  for (const x of [...dimms].sort((a, b) => a.slot - b.slot)) {
    if (x.addrMiB !== undefined) continue;
    let at = 0;
    for (const p of [...placed].sort((a, b) => (a.addrMiB ?? 0) - (b.addrMiB ?? 0))) {
      const start = p.addrMiB ?? 0;
      if (start - at >= x.sizeMiB) break;
      at = Math.max(at, start + p.sizeMiB);
    }
    x.addrMiB = at;
    placed.push(x);
  }
}

/** A running DIMM's guest-physical base address (bytes), as the live XML shows it. */
function dimmBase(x: Dimm): number {
  return DIMM_BASE + (x.addrMiB ?? 0) * 1024 * 1024;
}

interface VirtioMem {
  alias: string;
  sizeMiB: number;
  blockMiB: number;
  requestedMiB: number;
  currentMiB: number;
  node: number;
  pciSlot: number;
}

interface MemState {
  baseMiB: number;
  dimms: Dimm[];
  virtioMem: VirtioMem[];
  /** uri -> { key, xml } for ELEMENT metadata; TITLE/DESCRIPTION under their type numbers. */
  metadata: Map<string, { key: string; xml: string }>;
}

interface FakeDomain {
  name: string;
  uuid: string;
  id: number;
  running: boolean;
  persistent: boolean;
  maxMemoryMiB: number;
  slots: number;
  live: MemState;
  config: MemState;
  unplug: UnplugBehaviour;
  eventDelayMs: number;
  eventBeforeReply: boolean;
  silentDelayMs: number;
  dimmCounter: number;
  /** virDomainJobOperation of the running job (e.g. 5 = outgoing migration), or null: no job. */
  jobOperation: number | null;
  vmemBehaviour: Required<Omit<VirtioMemBehaviour, 'stallAtMiB'>> & { stallAtMiB: number };
  vmemTimers: Map<string, NodeJS.Timeout>;
  agent: FakeGuestAgent | null;
  /** Open guest-file handles: handle -> content. */
  agentFiles: Map<number, string>;
}

interface Client {
  socket: net.Socket;
  parser: PacketParser;
  callbacks: Map<number, { eventId: number; uuid: string | null }>;
}

const DIMM_BASE = 0x100000000; // libvirt/QEMU place hotplug memory above 4 GiB

const xmlParser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false });

export class FakeLibvirtd {
  readonly socketPath: string;
  private readonly server: net.Server;
  private readonly clients = new Set<Client>();
  private readonly domains = new Map<string, FakeDomain>();
  private readonly counts = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stalled = false;
  private stallProcs: Set<string> | null = null;
  private corruptReplies = 0;
  private replyMutators: ((pkt: Buffer) => Buffer)[] = [];
  private xmlLog: ReceivedXml[] | null = null;
  private wireLog: string[] | null = null;
  private held: { procs: Set<string>; replies: (() => void)[] } | null = null;
  private readonly refusedEventIds = new Set<number>();
  private nextId = 1;
  private nextCallbackId = 1;
  private nextHandle = 1000;
  private nameCounter = 0;
  private tmpDir: string | undefined;

  private constructor(socketPath: string, tmpDir: string | undefined) {
    this.socketPath = socketPath;
    this.tmpDir = tmpDir;
    this.server = net.createServer((s) => this.onConnection(s));
  }

  static async start(opts: { socketPath?: string } = {}): Promise<FakeLibvirtd> {
    let tmp: string | undefined;
    let path = opts.socketPath;
    if (!path) {
      tmp = mkdtempSync(join(tmpdir(), 'fake-libvirtd-'));
      path = join(tmp, 'libvirt-sock');
    } else if (existsSync(path)) {
      unlinkSync(path);
    }
    const fake = new FakeLibvirtd(path, tmp);
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(path, () => {
        fake.server.off('error', reject);
        resolve();
      });
    });
    return fake;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.tmpDir) rmSync(this.tmpDir, { recursive: true, force: true });
  }

  // ---- control API ----

  addDomain(o: AddDomainOptions): DomainRef {
    const uuid = (o.uuid ?? randomUUID()).toLowerCase();
    const name = o.name ?? `fake-vm-${++this.nameCounter}`;
    const running = o.running ?? true;
    const dimms: Dimm[] = (o.dimms ?? []).map((d, i) => ({
      alias: d.alias,
      sizeMiB: d.sizeMiB,
      node: d.node ?? 0,
      slot: d.slot ?? i,
    }));
    const vmem: VirtioMem[] = (o.virtioMem ?? []).map((v, i) => ({
      alias: v.alias,
      sizeMiB: v.sizeMiB,
      blockMiB: v.blockMiB ?? 2,
      requestedMiB: v.requestedMiB ?? 0,
      currentMiB: v.currentMiB ?? v.requestedMiB ?? 0,
      node: v.node ?? 0,
      pciSlot: 2 + i,
    }));
    const mem = (): MemState => ({
      baseMiB: o.memoryMiB,
      dimms: dimms.map((d) => ({ ...d })),
      virtioMem: vmem.map((v) => ({ ...v })),
      metadata: new Map(),
    });
    const dom: FakeDomain = {
      name,
      uuid,
      id: running ? this.nextId++ : -1,
      running,
      persistent: o.persistent ?? false,
      maxMemoryMiB: o.maxMemoryMiB ?? 8192,
      slots: o.slots ?? 16,
      live: mem(),
      config: mem(),
      unplug: o.unplug ?? 'release',
      eventDelayMs: o.eventDelayMs ?? 20,
      eventBeforeReply: o.eventBeforeReply ?? false,
      silentDelayMs: o.silentDelayMs ?? 50,
      dimmCounter: dimms.length,
      jobOperation: null,
      vmemBehaviour: vmemBehaviour(o.virtioMemBehaviour),
      vmemTimers: new Map(),
      agent: o.agent ?? null,
      agentFiles: new Map(),
    };
    this.domains.set(uuid, dom);
    return this.ref(dom);
  }

  setUnplugBehaviour(
    uuid: string,
    unplug: UnplugBehaviour,
    opts: { eventDelayMs?: number; eventBeforeReply?: boolean; silentDelayMs?: number } = {},
  ): void {
    const d = this.mustGet(uuid);
    d.unplug = unplug;
    if (opts.eventDelayMs !== undefined) d.eventDelayMs = opts.eventDelayMs;
    if (opts.eventBeforeReply !== undefined) d.eventBeforeReply = opts.eventBeforeReply;
    if (opts.silentDelayMs !== undefined) d.silentDelayMs = opts.silentDelayMs;
  }

  /** A job runs on the domain (job stats say so) until cleared with null; 5 = outgoing migration. */
  /** Replaces the domain's guest agent (null: none). */
  setAgent(uuid: string, agent: FakeGuestAgent | null): void {
    const d = this.domains.get(uuid.toLowerCase());
    if (d) d.agent = agent;
  }

  setJob(uuid: string, operation: number | null): void {
    this.mustGet(uuid).jobOperation = operation;
  }

  setVirtioMemBehaviour(uuid: string, b: VirtioMemBehaviour): void {
    this.mustGet(uuid).vmemBehaviour = vmemBehaviour(b);
  }

  /** As another client's update-memory-device (virsh): the guest follows; no event says `requested` changed. */
  setRequested(uuid: string, alias: string, requestedMiB: number): void {
    const d = this.mustGet(uuid);
    const dev = d.live.virtioMem.find((v) => v.alias === alias);
    if (!dev) throw new Error(`no virtio-mem ${alias} on ${uuid}`);
    dev.requestedMiB = requestedMiB;
    this.driveVirtioMem(d, alias);
  }

  /** The live virtio-mem devices (MiB). */
  getVirtioMem(uuid: string): { alias: string; requestedMiB: number; currentMiB: number }[] {
    return this.mustGet(uuid).live.virtioMem.map((v) => ({
      alias: v.alias,
      requestedMiB: v.requestedMiB,
      currentMiB: v.currentMiB,
    }));
  }

  /** Like `virsh destroy`: the domain stops (transient ones vanish) and a STOPPED event goes out. */
  destroyDomain(uuid: string): void {
    this.doDestroy(this.mustGet(uuid));
  }

  /** Removes a live DIMM and emits device-removed, as a late guest release would. */
  emitDeviceRemoved(uuid: string, alias: string): void {
    const d = this.mustGet(uuid);
    d.live.dimms = d.live.dimms.filter((x) => x.alias !== alias);
    this.emitEvent(d, { kind: 'deviceRemoved', callbackId: 0, domain: this.ref(d), alias });
  }

  getDomainState(uuid: string): { running: boolean; liveDimms: string[]; configDimms: string[] } | undefined {
    const d = this.domains.get(uuid.toLowerCase());
    if (!d) return undefined;
    return {
      running: d.running,
      liveDimms: d.live.dimms.map((x) => x.alias),
      configDimms: d.config.dimms.map((x) => x.alias),
    };
  }

  get domainCount(): number {
    return this.domains.size;
  }

  get connectionCount(): number {
    return this.clients.size;
  }

  dropConnections(): void {
    for (const c of this.clients) c.socket.destroy();
    this.clients.clear();
  }

  /**
   * While stalled, the fake reads and discards everything and answers nothing
   * (not even keepalive); with `procs`, only calls of those procedures are
   * swallowed and everything else is answered.
   */
  stall(on: boolean, procs?: string[]): void {
    this.stalled = on;
    this.stallProcs = on && procs ? new Set(procs) : null;
  }

  sendMalformed(kind: MalformedKind): void {
    for (const c of this.clients) c.socket.write(malformedPacket(kind));
  }

  /** Announces a packet far larger than any client cap (and sends a little of it). */
  sendOversized(): void {
    const head = Buffer.alloc(32);
    head.writeUInt32BE(0x7fff_fff0, 0);
    head.writeUInt32BE(REMOTE_PROGRAM, 4);
    head.writeUInt32BE(REMOTE_PROTOCOL_VERSION, 8);
    head.writeInt32BE(Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, 12);
    head.writeInt32BE(MessageType.MESSAGE, 16);
    for (const c of this.clients) c.socket.write(head);
  }

  /** The next `n` successful replies lose their last 4 body bytes (a truncated ret struct). */
  corruptNextReply(n = 1): void {
    this.corruptReplies += n;
  }

  /** Starts recording every XML document clients send; returns the (live) record. */
  recordXml(): ReceivedXml[] {
    this.xmlLog ??= [];
    return this.xmlLog;
  }

  /**
   * Starts recording what crosses the wire, in order: 'call NAME' and
   * 'reply NAME' (when the reply is written), 'pong', 'eof'; returns the (live) record.
   */
  recordWire(): string[] {
    this.wireLog ??= [];
    return this.wireLog;
  }

  /**
   * Replies to calls of these procedures wait until the returned function is
   * called: a libvirtd worker thread still busy on the call.
   */
  holdReplies(procs: string[]): () => void {
    const held = { procs: new Set(procs), replies: [] as (() => void)[] };
    this.held = held;
    return () => {
      if (this.held === held) this.held = null;
      for (const send of held.replies.splice(0)) send();
    };
  }

  /** Sends a keepalive PING to every client; their PONG shows up as 'pong' in the wire record. */
  ping(): void {
    const pkt = keepalivePacket(KeepaliveProc.PING);
    for (const c of this.clients) c.socket.write(pkt);
  }

  /** Writes raw bytes to every connected client (decoder fuzzing). */
  sendRaw(buf: Buffer): void {
    for (const c of this.clients) c.socket.write(buf);
  }

  /** The next successful reply goes through `fn` (whole packet, length word included) before it is sent. */
  mutateNextReply(fn: (pkt: Buffer) => Buffer): void {
    this.replyMutators.push(fn);
  }

  /** From now on, refuses to register callbacks for this event ID, as an older libvirtd does for IDs it does not know. */
  refuseEventId(eventId: number): void {
    this.refusedEventIds.add(eventId);
  }

  /** Number of calls received for a procedure name (e.g. 'DOMAIN_GET_XML_DESC'). */
  callCount(procName: string): number {
    return this.counts.get(procName) ?? 0;
  }

  /** Calls received so far, by procedure name. */
  callCounts(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  // ---- connection handling ----

  private onConnection(socket: net.Socket): void {
    const client: Client = { socket, parser: new PacketParser(), callbacks: new Map() };
    this.clients.add(client);
    socket.on('data', (chunk: Buffer) => {
      let packets: Packet[];
      try {
        packets = client.parser.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      if (this.stalled) {
        const only = this.stallProcs;
        if (!only) return;
        packets = packets.filter(
          (p) => p.header.prog !== REMOTE_PROGRAM || !only.has(ProcName[p.header.proc] ?? ''),
        );
      }
      for (const p of packets) this.onPacket(client, p);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.wireLog?.push('eof');
      this.clients.delete(client);
    });
  }

  private onPacket(client: Client, p: Packet): void {
    const h = p.header;
    if (h.prog === KEEPALIVE_PROGRAM) {
      if (h.proc === KeepaliveProc.PING) {
        this.counts.set('KEEPALIVE_PING', (this.counts.get('KEEPALIVE_PING') ?? 0) + 1);
        this.write(client, keepalivePacket(KeepaliveProc.PONG));
      } else if (h.proc === KeepaliveProc.PONG) {
        this.wireLog?.push('pong');
      }
      return;
    }
    const qemu = h.prog === QEMU_PROGRAM && h.proc === QemuProc.DOMAIN_AGENT_COMMAND;
    if ((h.prog !== REMOTE_PROGRAM && !qemu) || h.type !== MessageType.CALL) {
      client.socket.destroy();
      return;
    }
    const name = qemu ? 'QEMU_DOMAIN_AGENT_COMMAND' : (ProcName[h.proc] ?? `PROC_${h.proc}`);
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    this.wireLog?.push(`call ${name}`);
    const held = this.held?.procs.has(name) ? this.held : null;
    const reply = (status: number, body?: (w: XdrWriter) => void) => {
      if (held && this.held === held) {
        held.replies.push(() => reply(status, body));
        return;
      }
      let pkt = encodePacket(
        {
          prog: h.prog,
          vers: REMOTE_PROTOCOL_VERSION,
          proc: h.proc,
          type: MessageType.REPLY,
          serial: h.serial,
          status,
        },
        body,
      );
      if (status === MessageStatus.OK && this.corruptReplies > 0 && pkt.length >= 32) {
        this.corruptReplies--;
        pkt = Buffer.from(pkt.subarray(0, pkt.length - 4));
        pkt.writeUInt32BE(pkt.length, 0);
      }
      const mutate = status === MessageStatus.OK ? this.replyMutators.shift() : undefined;
      if (mutate) pkt = mutate(pkt);
      if (!client.socket.destroyed) this.wireLog?.push(`reply ${name}`);
      this.write(client, pkt);
    };
    let result: Promise<((w: XdrWriter) => void) | undefined>;
    try {
      result = Promise.resolve(
        qemu ? this.agentCommand(bodyReader(p)) : this.handle(client, h.proc, bodyReader(p)),
      );
    } catch (e) {
      result = Promise.reject(e);
    }
    result.then(
      (body) => reply(MessageStatus.OK, body),
      (e: unknown) => {
        const fe =
          e instanceof FakeError
            ? e
            : new FakeError(
                ERR.INTERNAL_ERROR,
                FROM_QEMU,
                `internal error: ${e instanceof Error ? e.message : e}`,
              );
        reply(MessageStatus.ERROR, (w) =>
          writeRemoteError(w, { code: fe.code, domain: fe.domain, message: fe.message }),
        );
      },
    );
  }

  private write(client: Client, buf: Buffer): void {
    if ((this.stalled && !this.stallProcs) || client.socket.destroyed) return;
    client.socket.write(buf);
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.later(ms, resolve));
  }

  // ---- the guest agent (QEMU program, virDomainQemuAgentCommand) ----

  private async agentCommand(r: XdrReader): Promise<(w: XdrWriter) => void> {
    const d = this.lookup(readDomain(r).uuid);
    const cmd = r.readString();
    const timeoutS = r.readInt();
    r.readUint(); // flags
    if (!d.running) throw new FakeError(ERR.OPERATION_INVALID, FROM_DOMAIN, 'domain is not running');
    const agent = d.agent;
    if (!agent) {
      throw new FakeError(
        ERR.ARGUMENT_UNSUPPORTED,
        FROM_QEMU,
        'argument unsupported: QEMU guest agent is not configured',
      );
    }
    if (agent.mode === 'silent') {
      // libvirt waits `timeout` seconds (-1: its default of 5 s; -2: for ever), then gives up.
      if (timeoutS === -2) await new Promise<never>(() => undefined);
      await this.sleep((timeoutS < 0 ? 5 : timeoutS) * 1000);
      throw new FakeError(
        ERR.AGENT_UNRESPONSIVE,
        FROM_QEMU,
        'Guest agent is not responding: Guest agent not available for now',
      );
    }
    const { execute, arguments: args = {} } = JSON.parse(cmd) as {
      execute: string;
      arguments?: Record<string, unknown>;
    };
    if (agent.mode === 'files-blocked' && execute.startsWith('guest-file-')) {
      throw new FakeError(
        ERR.AGENT_COMMAND_FAILED,
        FROM_QEMU,
        `internal error: unable to execute QEMU agent command '${execute}': The command ${execute} has been disabled for this instance`,
      );
    }
    const ret = this.agentReturn(d, agent, execute, args);
    const out = JSON.stringify({ return: ret });
    return (w) => w.writeOptionalString(out);
  }

  private agentReturn(
    d: FakeDomain,
    agent: FakeGuestAgent,
    execute: string,
    args: Record<string, unknown>,
  ): unknown {
    const blockBytes = (agent.blockSizeMiB ?? 128) * 1024 * 1024;
    const blocks = this.agentBlocks(d, agent, blockBytes);
    switch (execute) {
      case 'guest-ping':
        return {};
      case 'guest-get-memory-blocks':
        return [...blocks].map(([index, zone]) => ({
          'phys-index': index,
          online: zone !== 'offline',
          'can-offline': true,
        }));
      case 'guest-file-open': {
        const path = String(args.path);
        let content: string | undefined;
        if (path === '/sys/devices/system/memory/block_size_bytes') content = `${blockBytes.toString(16)}\n`;
        const m = /^\/sys\/devices\/system\/memory\/memory(\d+)\/valid_zones$/.exec(path);
        if (m) {
          const zone = blocks.get(Number(m[1]));
          // An offline block lists the zones it could go to; an online one its zone.
          if (zone !== undefined) content = zone === 'offline' ? 'Normal Movable\n' : `${zone}\n`;
        }
        if (content === undefined) {
          throw new FakeError(
            ERR.AGENT_COMMAND_FAILED,
            FROM_QEMU,
            `internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file '${path}' (mode: 'r'): No such file or directory`,
          );
        }
        const handle = this.nextHandle++;
        d.agentFiles.set(handle, content);
        return handle;
      }
      case 'guest-file-read': {
        const content = d.agentFiles.get(Number(args.handle)) ?? '';
        d.agentFiles.set(Number(args.handle), '');
        return { count: content.length, 'buf-b64': Buffer.from(content).toString('base64'), eof: true };
      }
      case 'guest-file-close':
        d.agentFiles.delete(Number(args.handle));
        return {};
      default:
        throw new FakeError(
          ERR.AGENT_COMMAND_FAILED,
          FROM_QEMU,
          `internal error: unable to execute QEMU agent command '${execute}': The command ${execute} has not been found`,
        );
    }
  }

  /** The guest's memory blocks of the live DIMMs (index -> zone), at the addresses the live XML shows. */
  private agentBlocks(d: FakeDomain, agent: FakeGuestAgent, blockBytes: number): Map<number, FakeZone> {
    const out = new Map<number, FakeZone>();
    ensureAddrs(d.live.dimms);
    for (const x of d.live.dimms) {
      const base = dimmBase(x);
      const n = Math.floor((x.sizeMiB * 1024 * 1024) / blockBytes);
      const z = agent.zones?.[x.alias] ?? 'Movable';
      for (let i = 0; i < n; i++) {
        out.set(base / blockBytes + i, Array.isArray(z) ? (z[i] ?? 'Movable') : z);
      }
    }
    return out;
  }

  // ---- procedures ----

  private handle(
    client: Client,
    proc: number,
    r: XdrReader,
  ): ((w: XdrWriter) => void) | undefined | Promise<((w: XdrWriter) => void) | undefined> {
    switch (proc) {
      case Proc.AUTH_LIST:
        return (w) => w.writeArray([AuthType.NONE], (ww, v) => ww.writeInt(v));
      case Proc.CONNECT_OPEN:
        r.readOptionalString();
        r.readUint();
        return undefined;
      case Proc.CONNECT_CLOSE:
        return undefined;
      case Proc.CONNECT_SUPPORTS_FEATURE: {
        const feature = r.readInt();
        return (w) => w.writeInt(feature === FEATURE_PROGRAM_KEEPALIVE ? 1 : 0);
      }
      case Proc.CONNECT_GET_LIB_VERSION:
        return (w) => w.writeUhyper(9_000_000);
      case Proc.CONNECT_GET_VERSION:
        return (w) => w.writeUhyper(7_002_000);
      case Proc.CONNECT_GET_HOSTNAME:
        return (w) => w.writeString('fake-host');
      case Proc.CONNECT_LIST_ALL_DOMAINS: {
        r.readInt();
        const flags = r.readUint();
        const list = [...this.domains.values()].filter((d) => matchesListFlags(d, flags));
        return (w) => {
          w.writeArray(list, (ww, d) => writeDomain(ww, this.ref(d)));
          w.writeUint(list.length);
        };
      }
      case Proc.DOMAIN_LOOKUP_BY_UUID: {
        const d = this.lookup(uuidFromBytes(r.readOpaqueFixed(UUID_BYTES)));
        return (w) => writeDomain(w, this.ref(d));
      }
      case Proc.DOMAIN_GET_XML_DESC: {
        const d = this.lookup(readDomain(r).uuid);
        const flags = r.readUint();
        const inactive = (flags & 2) !== 0 || !d.running;
        const xml = this.domainXml(d, inactive && d.persistent ? 'config' : 'live');
        return (w) => w.writeString(xml);
      }
      case Proc.DOMAIN_GET_STATE: {
        const d = this.lookup(readDomain(r).uuid);
        return (w) => w.writeInt(d.running ? 1 : 5).writeInt(d.running ? 1 : 0);
      }
      case Proc.DOMAIN_GET_JOB_STATS: {
        const d = this.lookup(readDomain(r).uuid);
        r.readUint();
        const op = d.running ? d.jobOperation : null;
        // As libvirt 9: type NONE and no params without a job; UNBOUNDED with operation and time while one runs.
        return (w) => {
          if (op === null) {
            w.writeInt(0);
            writeTypedParams(w, []);
            return;
          }
          w.writeInt(2);
          writeTypedParams(w, [
            { field: 'operation', type: TypedParamType.INT, value: op },
            { field: 'time_elapsed', type: TypedParamType.ULLONG, value: 1234n },
            { field: 'memory_total', type: TypedParamType.ULLONG, value: 1073741824n },
          ]);
        };
      }
      case Proc.DOMAIN_ATTACH_DEVICE_FLAGS: {
        const uuid = readDomain(r).uuid;
        const xml = r.readString();
        const flags = r.readUint();
        this.xmlLog?.push({ proc: 'DOMAIN_ATTACH_DEVICE_FLAGS', uuid, xml, flags });
        const d = this.lookup(uuid);
        this.attach(d, xml, flags);
        return undefined;
      }
      case Proc.DOMAIN_DETACH_DEVICE_FLAGS: {
        const uuid = readDomain(r).uuid;
        const xml = r.readString();
        const flags = r.readUint();
        this.xmlLog?.push({ proc: 'DOMAIN_DETACH_DEVICE_FLAGS', uuid, xml, flags });
        const d = this.lookup(uuid);
        return this.detach(d, xml, flags);
      }
      case Proc.DOMAIN_UPDATE_DEVICE_FLAGS: {
        const uuid = readDomain(r).uuid;
        const xml = r.readString();
        const flags = r.readUint();
        this.xmlLog?.push({ proc: 'DOMAIN_UPDATE_DEVICE_FLAGS', uuid, xml, flags });
        this.update(this.lookup(uuid), xml, flags);
        return undefined;
      }
      case Proc.DOMAIN_SET_METADATA: {
        const uuid = readDomain(r).uuid;
        const type = r.readInt();
        const metadata = r.readOptionalString();
        const key = r.readOptionalString();
        const uri = r.readOptionalString();
        const flags = r.readUint();
        if (metadata !== null) this.xmlLog?.push({ proc: 'DOMAIN_SET_METADATA', uuid, xml: metadata, flags });
        const d = this.lookup(uuid);
        for (const st of this.targets(d, flags)) setMetadata(st, type, metadata, key, uri);
        return undefined;
      }
      case Proc.DOMAIN_GET_METADATA: {
        const d = this.lookup(readDomain(r).uuid);
        const type = r.readInt();
        const uri = r.readOptionalString();
        const flags = r.readUint();
        const st = (flags & DomainAffect.CONFIG) !== 0 || !d.running ? d.config : d.live;
        const entry = st.metadata.get(type === MetadataType.ELEMENT ? `e:${uri}` : `t:${type}`);
        if (!entry) {
          throw new FakeError(
            ERR.NO_DOMAIN_METADATA,
            FROM_DOMAIN,
            'metadata not found: Requested metadata element is not present',
          );
        }
        return (w) => w.writeString(entry.xml);
      }
      case Proc.DOMAIN_DEFINE_XML: {
        const xml = r.readString();
        this.xmlLog?.push({ proc: 'DOMAIN_DEFINE_XML', uuid: null, xml, flags: 0 });
        return this.define(xml);
      }
      case Proc.DOMAIN_CREATE_XML: {
        const xml = r.readString();
        r.readUint();
        const d = this.fromXml(xml, false);
        d.running = true;
        d.id = this.nextId++;
        this.emitLifecycle(d, LifecycleEvent.STARTED, 0);
        return (w) => writeDomain(w, this.ref(d));
      }
      case Proc.DOMAIN_DESTROY:
        this.doDestroy(this.lookup(readDomain(r).uuid));
        return undefined;
      case Proc.DOMAIN_UNDEFINE: {
        const d = this.lookup(readDomain(r).uuid);
        if (d.running) d.persistent = false;
        else this.domains.delete(d.uuid);
        this.emitLifecycle(d, LifecycleEvent.UNDEFINED, 0);
        return undefined;
      }
      case Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: {
        const eventId = r.readInt();
        const dom = r.readOptional(readDomain);
        if (this.refusedEventIds.has(eventId)) {
          throw new FakeError(
            ERR.INVALID_ARG,
            FROM_DOMAIN,
            `invalid argument: unsupported event ID ${eventId}`,
          );
        }
        const id = this.nextCallbackId++;
        client.callbacks.set(id, { eventId, uuid: dom?.uuid ?? null });
        return (w) => w.writeInt(id);
      }
      case Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY:
        client.callbacks.delete(r.readInt());
        return undefined;
      default:
        throw new FakeError(ERR.NO_SUPPORT, 7, `this function is not supported by the fake: ${proc}`);
    }
  }

  private targets(d: FakeDomain, flags: number): MemState[] {
    const live = (flags & DomainAffect.LIVE) !== 0 || (flags === DomainAffect.CURRENT && d.running);
    const config = (flags & DomainAffect.CONFIG) !== 0 || (flags === DomainAffect.CURRENT && !d.running);
    if (live && !d.running) {
      throw new FakeError(
        ERR.OPERATION_INVALID,
        FROM_DOMAIN,
        'Requested operation is not valid: domain is not running',
      );
    }
    if (config && !d.persistent) {
      throw new FakeError(
        ERR.OPERATION_INVALID,
        FROM_DOMAIN,
        'Requested operation is not valid: cannot change persistent config of a transient domain',
      );
    }
    const out: MemState[] = [];
    if (live) out.push(d.live);
    if (config) out.push(d.config);
    return out;
  }

  private attach(d: FakeDomain, xml: string, flags: number): void {
    const spec = parseDimm(xml);
    const targets = this.targets(d, flags);
    for (const st of targets) {
      if (st.dimms.length >= d.slots) {
        throw new FakeError(
          ERR.OPERATION_FAILED,
          FROM_QEMU,
          'operation failed: no free memory device slot available',
        );
      }
      const totalMiB = st.baseMiB + st.dimms.reduce((a, x) => a + x.sizeMiB, 0) + spec.sizeMiB;
      if (totalMiB > d.maxMemoryMiB) {
        throw new FakeError(
          ERR.OPERATION_INVALID,
          FROM_DOMAIN,
          'Requested operation is not valid: Attaching memory device with size exceeds domain maximum memory',
        );
      }
    }
    const alias = spec.alias ?? `dimm${d.dimmCounter}`;
    d.dimmCounter++;
    for (const st of targets) {
      const used = new Set(st.dimms.map((x) => x.slot));
      let slot = spec.slot ?? 0;
      if (spec.slot === undefined) while (used.has(slot)) slot++;
      st.dimms.push({ alias, sizeMiB: spec.sizeMiB, node: spec.node, slot });
    }
    ensureAddrs(d.live.dimms);
    if (targets.includes(d.live)) {
      // As libvirt 9 does for a DIMM: device-added names the memory backend object, "mem" + alias.
      this.emitEvent(d, { kind: 'deviceAdded', callbackId: 0, domain: this.ref(d), alias: `mem${alias}` });
    }
  }

  private async detach(d: FakeDomain, xml: string, flags: number): Promise<undefined> {
    const spec = parseDimm(xml);
    const targets = this.targets(d, flags);
    const find = (st: MemState) =>
      st.dimms.find((x) =>
        spec.alias !== undefined
          ? x.alias === spec.alias
          : x.sizeMiB === spec.sizeMiB &&
            x.node === spec.node &&
            (spec.slot === undefined || x.slot === spec.slot),
      );
    for (const st of targets) {
      if (!find(st)) {
        throw new FakeError(
          ERR.DEVICE_MISSING,
          FROM_DOMAIN,
          'device not found: matching memory device was not found',
        );
      }
    }
    if (targets.includes(d.config)) {
      const dimm = find(d.config)!;
      d.config.dimms = d.config.dimms.filter((x) => x !== dimm);
    }
    if (!targets.includes(d.live)) return undefined;
    const dimm = find(d.live)!;
    const release = () => {
      if (!d.live.dimms.includes(dimm)) return;
      d.live.dimms = d.live.dimms.filter((x) => x !== dimm);
      this.emitEvent(d, { kind: 'deviceRemoved', callbackId: 0, domain: this.ref(d), alias: dimm.alias });
    };
    switch (d.unplug) {
      case 'release':
        if (d.eventBeforeReply) {
          await this.sleep(d.eventDelayMs);
          release();
        } else {
          this.later(d.eventDelayMs, release);
        }
        return undefined;
      case 'reject':
        await this.sleep(d.eventDelayMs);
        this.emitEvent(d, {
          kind: 'deviceRemovalFailed',
          callbackId: 0,
          domain: this.ref(d),
          alias: dimm.alias,
        });
        throw new FakeError(
          ERR.OPERATION_FAILED,
          FROM_QEMU,
          'operation failed: unplug of device was rejected by the guest',
        );
      case 'silent':
        await this.sleep(d.silentDelayMs);
        return undefined;
    }
  }

  /** virDomainUpdateDeviceFlags for a virtio-mem device: only `<requested>` may change, as in libvirt. */
  private update(d: FakeDomain, xml: string, flags: number): void {
    const spec = parseVirtioMem(xml);
    const targets = this.targets(d, flags);
    for (const st of targets) {
      const dev = st.virtioMem.find((v) => v.alias === spec.alias);
      if (!dev) {
        throw new FakeError(ERR.DEVICE_MISSING, FROM_DOMAIN, 'device not found: memory device not found');
      }
      if (spec.requestedKiB % (dev.blockMiB * 1024) !== 0) {
        throw new FakeError(
          ERR.CONFIG_UNSUPPORTED,
          FROM_DOMAIN,
          'unsupported configuration: requested size must be an integer multiple of block size',
        );
      }
      if (spec.requestedKiB > dev.sizeMiB * 1024) {
        throw new FakeError(
          ERR.CONFIG_UNSUPPORTED,
          FROM_DOMAIN,
          'unsupported configuration: requested size must be smaller than or equal to @size',
        );
      }
    }
    for (const st of targets) {
      const dev = st.virtioMem.find((v) => v.alias === spec.alias)!;
      dev.requestedMiB = spec.requestedKiB / 1024;
      if (st === d.config) dev.currentMiB = dev.requestedMiB;
    }
    if (targets.includes(d.live)) this.driveVirtioMem(d, spec.alias);
  }

  /** The fake guest's virtio-mem driver: moves `current` toward `requested`, one event per step. */
  private driveVirtioMem(d: FakeDomain, alias: string): void {
    const old = d.vmemTimers.get(alias);
    if (old) {
      clearTimeout(old);
      this.timers.delete(old);
    }
    const b = d.vmemBehaviour;
    if (b.mode === 'silent') return;
    const step = () => {
      d.vmemTimers.delete(alias);
      const dev = d.live.virtioMem.find((v) => v.alias === alias);
      if (!dev || !d.running) return;
      const floor = b.mode === 'stall' ? Math.max(dev.requestedMiB, b.stallAtMiB) : dev.requestedMiB;
      let next = dev.currentMiB;
      if (dev.currentMiB < dev.requestedMiB) next = Math.min(dev.requestedMiB, dev.currentMiB + b.stepMiB);
      else if (dev.currentMiB > floor) next = Math.max(floor, dev.currentMiB - b.stepMiB);
      if (next === dev.currentMiB) return;
      dev.currentMiB = next;
      if (b.events)
        this.emitEvent(d, {
          kind: 'memoryDeviceSizeChange',
          callbackId: 0,
          domain: this.ref(d),
          alias,
          sizeKiB: next * 1024,
        });
      schedule();
    };
    const schedule = () => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        step();
      }, b.stepMs);
      this.timers.add(t);
      d.vmemTimers.set(alias, t);
    };
    schedule();
  }

  private define(xml: string): (w: XdrWriter) => void {
    const parsed = parseDomainXml(xml);
    const existing =
      (parsed.uuid ? this.domains.get(parsed.uuid) : undefined) ??
      [...this.domains.values()].find((x) => x.name === parsed.name);
    if (existing) {
      existing.persistent = true;
      existing.config = {
        baseMiB: parsed.memoryMiB,
        dimms: parsed.dimms,
        virtioMem: existing.config.virtioMem,
        metadata: existing.config.metadata,
      };
      if (!existing.running) existing.live = cloneMem(existing.config);
      this.emitLifecycle(existing, LifecycleEvent.DEFINED, 1);
      return (w) => writeDomain(w, this.ref(existing));
    }
    const d = this.fromXml(xml, true);
    this.emitLifecycle(d, LifecycleEvent.DEFINED, 0);
    return (w) => writeDomain(w, this.ref(d));
  }

  private fromXml(xml: string, persistent: boolean): FakeDomain {
    const p = parseDomainXml(xml);
    const ref = this.addDomain({
      name: p.name,
      uuid: p.uuid ?? undefined,
      memoryMiB: p.memoryMiB,
      maxMemoryMiB: p.maxMemoryMiB,
      slots: p.slots,
      dimms: p.dimms,
      running: false,
      persistent,
    });
    return this.domains.get(ref.uuid)!;
  }

  private doDestroy(d: FakeDomain): void {
    if (!d.running) {
      throw new FakeError(
        ERR.OPERATION_INVALID,
        FROM_DOMAIN,
        'Requested operation is not valid: domain is not running',
      );
    }
    d.running = false;
    const ref = this.ref(d);
    d.id = -1;
    if (d.persistent) d.live = cloneMem(d.config);
    else this.domains.delete(d.uuid);
    this.emitEvent(d, {
      kind: 'lifecycle',
      callbackId: 0,
      domain: ref,
      event: LifecycleEvent.STOPPED,
      detail: 1,
    });
  }

  private emitLifecycle(d: FakeDomain, event: number, detail: number): void {
    this.emitEvent(d, { kind: 'lifecycle', callbackId: 0, domain: this.ref(d), event, detail });
  }

  private emitEvent(d: FakeDomain, ev: DomainEventMessage): void {
    const eventId = EventIdForKind[ev.kind];
    for (const c of this.clients) {
      for (const [id, cb] of c.callbacks) {
        if (cb.eventId !== eventId || (cb.uuid !== null && cb.uuid !== d.uuid)) continue;
        this.write(c, encodeEventPacket({ ...ev, callbackId: id }));
      }
    }
  }

  private ref(d: FakeDomain): DomainRef {
    return { name: d.name, uuid: d.uuid, id: d.id };
  }

  private mustGet(uuid: string): FakeDomain {
    const d = this.domains.get(uuid.toLowerCase());
    if (!d) throw new Error(`fake libvirtd: no domain ${uuid}`);
    return d;
  }

  private lookup(uuid: string): FakeDomain {
    const d = this.domains.get(uuid);
    if (!d) {
      throw new FakeError(
        ERR.NO_DOMAIN,
        FROM_QEMU,
        `Domain not found: no domain with matching uuid '${uuid}'`,
      );
    }
    return d;
  }

  // ---- XML ----

  private domainXml(d: FakeDomain, which: 'live' | 'config'): string {
    const st = which === 'live' ? d.live : d.config;
    // As libvirt counts it: a virtio-mem device adds its maximum size, not its current one.
    const totalKiB =
      (st.baseMiB +
        st.dimms.reduce((a, x) => a + x.sizeMiB, 0) +
        st.virtioMem.reduce((a, v) => a + v.sizeMiB, 0)) *
      1024;
    const active = which === 'live' && d.running;
    const nodes = Math.max(1, ...st.dimms.map((x) => x.node + 1));
    const cellKiB = Math.floor((st.baseMiB * 1024) / nodes);
    const cells: string[] = [];
    for (let i = 0; i < nodes; i++) {
      cells.push(`      <cell id='${i}' cpus='${i}' memory='${cellKiB}' unit='KiB'/>`);
    }
    const meta = [...st.metadata.entries()].filter(([k]) => k.startsWith('e:'));
    const metaXml =
      meta.length === 0
        ? ''
        : `  <metadata>\n${meta.map(([k, v]) => `    ${namespaced(v.xml, v.key, k.slice(2))}`).join('\n')}\n  </metadata>\n`;
    const title = st.metadata.get(`t:${MetadataType.TITLE}`);
    const desc = st.metadata.get(`t:${MetadataType.DESCRIPTION}`);
    if (active) ensureAddrs(st.dimms);
    const dimms = [...st.dimms]
      .sort((a, b) => a.slot - b.slot)
      .map((x) => {
        const base = dimmBase(x);
        const addr = active
          ? `\n      <address type='dimm' slot='${x.slot}' base='0x${base.toString(16)}'/>`
          : '';
        const alias =
          active || x.alias.startsWith('ua-') ? `\n      <alias name='${escAttr(x.alias)}'/>` : '';
        return `    <memory model='dimm'>
      <target>
        <size unit='KiB'>${x.sizeMiB * 1024}</size>
        <node>${x.node}</node>
      </target>${alias}${addr}
    </memory>
`;
      })
      .join('');
    const vmems = st.virtioMem
      .map((v) => {
        const current = active ? `\n        <current unit='KiB'>${v.currentMiB * 1024}</current>` : '';
        const alias =
          active || v.alias.startsWith('ua-') ? `\n      <alias name='${escAttr(v.alias)}'/>` : '';
        const addr = active
          ? `\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x${v.pciSlot.toString(16).padStart(2, '0')}' function='0x0'/>`
          : '';
        return `    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>${v.sizeMiB * 1024}</size>
        <node>${v.node}</node>
        <block unit='KiB'>${v.blockMiB * 1024}</block>
        <requested unit='KiB'>${v.requestedMiB * 1024}</requested>${current}
      </target>${alias}${addr}
    </memory>
`;
      })
      .join('');
    return `<domain type='qemu'${active ? ` id='${d.id}'` : ''}>
  <name>${escText(d.name)}</name>
  <uuid>${d.uuid}</uuid>
${title ? `  <title>${escText(title.xml)}</title>\n` : ''}${desc ? `  <description>${escText(desc.xml)}</description>\n` : ''}${metaXml}  <maxMemory slots='${d.slots}' unit='KiB'>${d.maxMemoryMiB * 1024}</maxMemory>
  <memory unit='KiB'>${totalKiB}</memory>
  <currentMemory unit='KiB'>${totalKiB}</currentMemory>
  <vcpu placement='static'>${nodes}</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode='custom' match='exact' check='full'>
    <model fallback='forbid'>qemu64</model>
    <numa>
${cells.join('\n')}
    </numa>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
${d.agent ? agentChannel(active) : ''}${dimms}${vmems}  </devices>
</domain>
`;
  }
}

function matchesListFlags(d: FakeDomain, flags: number): boolean {
  if (flags & 3 && !((flags & 1 && d.running) || (flags & 2 && !d.running))) return false;
  if (flags & 12 && !((flags & 4 && d.persistent) || (flags & 8 && !d.persistent))) return false;
  if (flags & 16 && !d.running) return false;
  return true;
}

function cloneMem(m: MemState): MemState {
  return {
    baseMiB: m.baseMiB,
    // A new run lays its DIMMs out afresh.
    dimms: m.dimms.map(({ addrMiB: _, ...x }) => x),
    virtioMem: m.virtioMem.map((x) => ({ ...x })),
    metadata: new Map(m.metadata),
  };
}

function vmemBehaviour(b: VirtioMemBehaviour | undefined): FakeDomain['vmemBehaviour'] {
  return {
    mode: b?.mode ?? 'follow',
    stepMiB: b?.stepMiB ?? 64,
    stepMs: b?.stepMs ?? 20,
    stallAtMiB: b?.stallAtMiB ?? 0,
    events: b?.events ?? true,
  };
}

function parseVirtioMem(xml: string): { alias: string; requestedKiB: number } {
  let doc: XmlNode;
  try {
    doc = xmlParser.parse(xml, true) as XmlNode;
  } catch (e) {
    throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, `XML error: ${e instanceof Error ? e.message : e}`);
  }
  const mem = doc.memory as XmlNode | undefined;
  if (!mem || typeof mem !== 'object' || mem['@model'] !== 'virtio-mem') {
    throw new FakeError(
      ERR.NO_SUPPORT,
      FROM_QEMU,
      'this function is not supported: the fake only updates virtio-mem devices',
    );
  }
  const alias = (mem.alias as XmlNode | undefined)?.['@name'];
  if (typeof alias !== 'string') {
    throw new FakeError(ERR.DEVICE_MISSING, FROM_DOMAIN, 'device not found: memory device not found');
  }
  const req = textAndUnit(((mem.target ?? {}) as XmlNode).requested);
  return { alias, requestedKiB: toMiB(req.value, req.unit) * 1024 };
}

function setMetadata(
  st: MemState,
  type: number,
  metadata: string | null,
  key: string | null,
  uri: string | null,
) {
  if (type === MetadataType.ELEMENT) {
    if (!uri) throw new FakeError(ERR.INTERNAL_ERROR, FROM_DOMAIN, 'invalid argument: uri is required');
    const k = `e:${uri}`;
    if (metadata === null) st.metadata.delete(k);
    else {
      if (!key) throw new FakeError(ERR.INTERNAL_ERROR, FROM_DOMAIN, 'invalid argument: key is required');
      const parsed = tryParse(metadata);
      if (!parsed) throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, 'XML error: malformed metadata XML');
      st.metadata.set(k, { key, xml: metadata });
    }
  } else if (metadata === null || metadata === '') {
    st.metadata.delete(`t:${type}`);
  } else {
    st.metadata.set(`t:${type}`, { key: '', xml: metadata });
  }
}

function tryParse(xml: string): unknown {
  try {
    const v = new XMLParser({ ignoreAttributes: false }).parse(xml, true);
    return v && typeof v === 'object' && Object.keys(v).length > 0 ? v : null;
  } catch {
    return null;
  }
}

/** Puts an element and its descendants in namespace `uri` with prefix `key`, as libvirt shows it. */
function namespaced(xml: string, key: string, uri: string): string {
  let first = true;
  return xml.trim().replace(/<(\/?)([A-Za-z_][\w.-]*)/g, (_m, slash: string, tag: string) => {
    if (!slash && first) {
      first = false;
      return `<${key}:${tag} xmlns:${key}="${escAttr(uri)}"`;
    }
    return `<${slash}${key}:${tag}`;
  });
}

function escText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escAttr(s: string): string {
  return escText(s).replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

function toMiB(value: unknown, unit: unknown): number {
  const n = Number(value);
  if (!Number.isFinite(n))
    throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, `XML error: bad size ${String(value)}`);
  const u = typeof unit === 'string' ? unit.toLowerCase() : 'kib';
  const mult: Record<string, number> = {
    b: 1 / 1048576,
    bytes: 1 / 1048576,
    k: 1 / 1024,
    kib: 1 / 1024,
    m: 1,
    mib: 1,
    g: 1024,
    gib: 1024,
  };
  const m = mult[u];
  if (m === undefined) throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, `XML error: unknown unit ${u}`);
  return Math.floor(n * m);
}

type XmlNode = Record<string, unknown>;

function textAndUnit(node: unknown): { value: unknown; unit: unknown } {
  if (node !== null && typeof node === 'object') {
    const o = node as XmlNode;
    return { value: o['#text'], unit: o['@unit'] };
  }
  return { value: node, unit: undefined };
}

function parseDimm(xml: string): { alias?: string; sizeMiB: number; node: number; slot?: number } {
  let doc: XmlNode;
  try {
    doc = xmlParser.parse(xml, true) as XmlNode;
  } catch (e) {
    throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, `XML error: ${e instanceof Error ? e.message : e}`);
  }
  const mem = doc.memory as XmlNode | undefined;
  if (!mem || typeof mem !== 'object' || mem['@model'] !== 'dimm') {
    throw new FakeError(
      ERR.NO_SUPPORT,
      FROM_QEMU,
      'this function is not supported: the fake only handles DIMMs',
    );
  }
  const target = (mem.target ?? {}) as XmlNode;
  const { value, unit } = textAndUnit(target.size);
  const aliasNode = mem.alias as XmlNode | undefined;
  const addr = mem.address as XmlNode | undefined;
  const out: { alias?: string; sizeMiB: number; node: number; slot?: number } = {
    sizeMiB: toMiB(value, unit),
    node: target.node === undefined ? 0 : Number(target.node),
  };
  if (aliasNode && typeof aliasNode['@name'] === 'string') out.alias = aliasNode['@name'];
  if (addr && addr['@slot'] !== undefined) out.slot = Number(addr['@slot']);
  return out;
}

function parseDomainXml(xml: string): {
  name: string;
  uuid: string | null;
  memoryMiB: number;
  maxMemoryMiB: number;
  slots: number;
  dimms: Dimm[];
} {
  let doc: XmlNode;
  try {
    doc = xmlParser.parse(xml, true) as XmlNode;
  } catch (e) {
    throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, `XML error: ${e instanceof Error ? e.message : e}`);
  }
  const dom = doc.domain as XmlNode | undefined;
  if (!dom || typeof dom.name !== 'string')
    throw new FakeError(ERR.XML_ERROR, FROM_DOMAIN, 'XML error: missing name');
  const mem = textAndUnit(dom.memory);
  const max = textAndUnit(dom.maxMemory);
  const devices = (dom.devices ?? {}) as XmlNode;
  const memDevs = (
    devices.memory === undefined ? [] : Array.isArray(devices.memory) ? devices.memory : [devices.memory]
  ).filter((m: unknown) => (m as XmlNode)['@model'] === 'dimm');
  const dimms: Dimm[] = memDevs.map((m: unknown, i: number) => {
    const mm = m as XmlNode;
    const target = (mm.target ?? {}) as XmlNode;
    const size = textAndUnit(target.size);
    const alias = (mm.alias as XmlNode | undefined)?.['@name'];
    return {
      alias: typeof alias === 'string' ? alias : `dimm${i}`,
      sizeMiB: toMiB(size.value, size.unit),
      node: target.node === undefined ? 0 : Number(target.node),
      slot: i,
    };
  });
  const totalMiB = toMiB(mem.value, mem.unit);
  return {
    name: dom.name,
    uuid: typeof dom.uuid === 'string' ? dom.uuid.toLowerCase() : null,
    memoryMiB: totalMiB - dimms.reduce((a, x) => a + x.sizeMiB, 0),
    maxMemoryMiB: max.value === undefined ? totalMiB : toMiB(max.value, max.unit),
    slots: max.value === undefined ? 0 : Number((dom.maxMemory as XmlNode)['@slots'] ?? 16),
    dimms,
  };
}

function malformedPacket(kind: MalformedKind): Buffer {
  const header = (proc: number, type: number, prog = REMOTE_PROGRAM) =>
    encodePacket({ prog, vers: REMOTE_PROTOCOL_VERSION, proc, type, serial: 0, status: MessageStatus.OK });
  switch (kind) {
    case 'length-too-small': {
      const b = Buffer.alloc(8);
      b.writeUInt32BE(8, 0);
      return b;
    }
    case 'truncated-event': {
      // A lifecycle event whose body stops in the middle of the domain name.
      return encodePacket(
        {
          prog: REMOTE_PROGRAM,
          vers: REMOTE_PROTOCOL_VERSION,
          proc: Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE,
          type: MessageType.MESSAGE,
          serial: 0,
          status: MessageStatus.OK,
        },
        (w) => w.writeInt(1).writeUint(1000).writeUint(0x41414141),
      );
    }
    case 'bad-type':
      return header(Proc.DOMAIN_GET_XML_DESC, 9);
    case 'bad-program':
      return header(1, MessageType.MESSAGE, 0xdeadbeef);
    case 'garbage':
      return Buffer.from('GET / HTTP/1.1\r\nHost: libvirt\r\n\r\n');
  }
}

/** A domain event as libvirtd sends it: a MESSAGE whose procedure depends on the event. */
export function encodeEventPacket(ev: DomainEventMessage): Buffer {
  let proc = 0;
  const pkt = encodePacket(
    {
      prog: REMOTE_PROGRAM,
      vers: REMOTE_PROTOCOL_VERSION,
      proc: 0,
      type: MessageType.MESSAGE,
      serial: 0,
      status: MessageStatus.OK,
    },
    (w) => {
      proc = writeDomainEvent(w, ev);
    },
  );
  // The procedure is known only once the body is written; it sits at offset 12.
  pkt.writeInt32BE(proc, 12);
  return pkt;
}

/** The guest agent's virtio-serial channel, as libvirt shows it (the live XML adds its state and alias). */
function agentChannel(active: boolean): string {
  const live = active
    ? ` state='connected'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>`
    : '/>';
  return `    <channel type='unix'>
      <source mode='bind' path='/run/libvirt/qemu/channel/1-fake/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'${live}
    </channel>
`;
}
