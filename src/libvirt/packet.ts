// libvirt RPC framing (virnetprotocol.x): u32 total length (counting itself),
// a 24-byte header, then the XDR body. PacketParser turns a byte stream into
// whole packets, with a hard cap so a bad peer cannot make us buffer forever.

import { LibvirtProtocolError } from './errors.js';
import { XdrReader, XdrWriter } from './xdr.js';

export const MessageType = {
  CALL: 0,
  REPLY: 1,
  MESSAGE: 2,
  STREAM: 3,
  CALL_WITH_FDS: 4,
  REPLY_WITH_FDS: 5,
} as const;
export const MessageStatus = { OK: 0, ERROR: 1, CONTINUE: 2 } as const;

export const LEN_BYTES = 4;
export const HEADER_BYTES = 24;
/** Length word + header: the smallest valid packet. */
export const MIN_PACKET_BYTES = LEN_BYTES + HEADER_BYTES;
/** Default cap on a whole packet (libvirt 9: VIR_NET_MESSAGE_MAX 32 MiB, plus the length word). */
export const DEFAULT_MAX_PACKET_BYTES = 32 * 1024 * 1024 + LEN_BYTES;

export interface PacketHeader {
  prog: number;
  vers: number;
  proc: number;
  type: number;
  serial: number;
  status: number;
}

export interface Packet {
  header: PacketHeader;
  /** The whole packet; the body is bytes [bodyOffset, data.length). */
  data: Buffer;
  bodyOffset: number;
}

/** A reader positioned on a packet's body. */
export function bodyReader(p: Packet): XdrReader {
  return new XdrReader(p.data, p.bodyOffset, p.data.length);
}

/** A writer with room for the length word and header, filled by finishPacket. */
export function packetWriter(initialSize = 256): XdrWriter {
  return new XdrWriter(initialSize, MIN_PACKET_BYTES);
}

/** Writes the length word and header into a writer from packetWriter(). */
export function finishPacket(w: XdrWriter, h: PacketHeader): Buffer {
  const buf = w.finish();
  buf.writeUInt32BE(buf.length, 0);
  buf.writeUInt32BE(h.prog >>> 0, 4);
  buf.writeUInt32BE(h.vers >>> 0, 8);
  buf.writeInt32BE(h.proc | 0, 12);
  buf.writeInt32BE(h.type | 0, 16);
  buf.writeUInt32BE(h.serial >>> 0, 20);
  buf.writeInt32BE(h.status | 0, 24);
  return buf;
}

export function encodePacket(h: PacketHeader, body?: (w: XdrWriter) => void): Buffer {
  const w = packetWriter();
  body?.(w);
  return finishPacket(w, h);
}

function decodeHeader(data: Buffer): PacketHeader {
  return {
    prog: data.readUInt32BE(4),
    vers: data.readUInt32BE(8),
    proc: data.readInt32BE(12),
    type: data.readInt32BE(16),
    serial: data.readUInt32BE(20),
    status: data.readInt32BE(24),
  };
}

/**
 * Incremental parser: feed it socket chunks, get whole packets. Throws
 * LibvirtProtocolError on a length below the header size or above the cap;
 * after that the stream is unusable and the caller must close it.
 */
export class PacketParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private expected = -1;

  constructor(readonly maxPacketBytes = DEFAULT_MAX_PACKET_BYTES) {}

  push(chunk: Buffer): Packet[] {
    const out: Packet[] = [];
    if (chunk.length === 0) return out;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < LEN_BYTES) break;
        const len = this.peekLength();
        if (len < MIN_PACKET_BYTES) {
          throw new LibvirtProtocolError(
            `packet length ${len} is smaller than the header (${MIN_PACKET_BYTES})`,
          );
        }
        if (len > this.maxPacketBytes) {
          throw new LibvirtProtocolError(
            `packet length ${len} exceeds the limit of ${this.maxPacketBytes} bytes`,
          );
        }
        this.expected = len;
      }
      if (this.buffered < this.expected) break;
      const data = this.take(this.expected);
      this.expected = -1;
      out.push({ header: decodeHeader(data), data, bodyOffset: MIN_PACKET_BYTES });
    }
    return out;
  }

  /** Bytes received but not yet part of a whole packet. */
  get pendingBytes(): number {
    return this.buffered;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= LEN_BYTES) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, LEN_BYTES);
    return head.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      // Common case: the packet sits in one chunk; hand out a view, no copy.
      const data = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return data;
    }
    const data = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const want = n - filled;
      if (c.length <= want) {
        c.copy(data, filled);
        filled += c.length;
        this.chunks.shift();
      } else {
        c.copy(data, filled, 0, want);
        this.chunks[0] = c.subarray(want);
        filled += want;
      }
    }
    this.buffered -= n;
    return data;
  }
}
