// A small XDR (RFC 4506) codec over Buffers: only what libvirt's RPC protocol
// needs. Our own rather than a library: the subset is tiny, we want zero-copy
// header reservation and bounds checks that raise LibvirtProtocolError (never
// a RangeError deep in Node), and a hand-written reader is the fastest option.

import { LibvirtProtocolError } from './errors.js';

/** Default cap for a single string/opaque (libvirt's REMOTE_STRING_MAX). */
export const XDR_STRING_MAX = 4 * 1024 * 1024;
/** Default cap on array element counts (generous; lists are bounded by packet size anyway). */
export const XDR_ARRAY_MAX = 1 << 20;

const pad4 = (n: number): number => (4 - (n & 3)) & 3;

export class XdrWriter {
  private buf: Buffer;
  private pos: number;

  /** `reserve` bytes are left at the start (for a packet header written later). */
  constructor(initialSize = 256, reserve = 0) {
    this.buf = Buffer.allocUnsafe(Math.max(initialSize, reserve + 16));
    this.buf.fill(0, 0, reserve);
    this.pos = reserve;
  }

  get length(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  writeInt(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
      throw new RangeError(`XDR int out of range: ${v}`);
    }
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  writeUint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`XDR unsigned int out of range: ${v}`);
    }
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  writeBool(v: boolean): this {
    return this.writeInt(v ? 1 : 0);
  }

  writeHyper(v: bigint | number): this {
    this.ensure(8);
    this.buf.writeBigInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  writeUhyper(v: bigint | number): this {
    this.ensure(8);
    this.buf.writeBigUInt64BE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  /** Fixed-length opaque: exactly `len` bytes, padded to 4. */
  writeOpaqueFixed(data: Uint8Array, len: number): this {
    if (data.length !== len)
      throw new RangeError(`XDR fixed opaque must be ${len} bytes, got ${data.length}`);
    const padded = len + pad4(len);
    this.ensure(padded);
    this.buf.set(data, this.pos);
    this.buf.fill(0, this.pos + len, this.pos + padded);
    this.pos += padded;
    return this;
  }

  writeOpaque(data: Uint8Array): this {
    this.writeUint(data.length);
    return this.writeOpaqueFixed(data, data.length);
  }

  writeString(s: string): this {
    const len = Buffer.byteLength(s, 'utf8');
    const padded = len + pad4(len);
    this.ensure(4 + padded);
    this.buf.writeUInt32BE(len, this.pos);
    this.pos += 4;
    this.buf.write(s, this.pos, len, 'utf8');
    this.buf.fill(0, this.pos + len, this.pos + padded);
    this.pos += padded;
    return this;
  }

  /** XDR optional-data ("pointer"): a bool, then the value when present. */
  writeOptional<T>(v: T | null | undefined, write: (w: this, v: T) => void): this {
    if (v === null || v === undefined) return this.writeUint(0);
    this.writeUint(1);
    write(this, v);
    return this;
  }

  writeOptionalString(s: string | null | undefined): this {
    return this.writeOptional(s, (w, v) => w.writeString(v));
  }

  /** Variable-length array: count, then each element. */
  writeArray<T>(items: readonly T[], write: (w: this, v: T) => void): this {
    this.writeUint(items.length);
    for (const item of items) write(this, item);
    return this;
  }

  /** Overwrite a u32 at an absolute offset (e.g. a length prefix). */
  patchUint(offset: number, v: number): void {
    this.buf.writeUInt32BE(v >>> 0, offset);
  }

  /** The written bytes (a view, not a copy). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

export class XdrReader {
  private pos: number;
  private readonly end: number;

  constructor(
    private readonly buf: Buffer,
    offset = 0,
    end = buf.length,
    private readonly stringMax = XDR_STRING_MAX,
  ) {
    if (offset < 0 || end > buf.length || offset > end)
      throw new LibvirtProtocolError('XDR reader: bad bounds');
    this.pos = offset;
    this.end = end;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) {
      throw new LibvirtProtocolError(
        `XDR: truncated ${what} at offset ${this.pos} (need ${n} bytes, have ${this.end - this.pos})`,
      );
    }
  }

  readInt(): number {
    this.need(4, 'int');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  readUint(): number {
    this.need(4, 'unsigned int');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  readBool(): boolean {
    const v = this.readUint();
    if (v > 1) throw new LibvirtProtocolError(`XDR: invalid bool ${v}`);
    return v === 1;
  }

  readHyper(): bigint {
    this.need(8, 'hyper');
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  readUhyper(): bigint {
    this.need(8, 'unsigned hyper');
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Unsigned hyper as a number; rejects values above 2^53-1. */
  readUhyperNumber(): number {
    const v = this.readUhyper();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new LibvirtProtocolError(`XDR: hyper ${v} too large`);
    return Number(v);
  }

  /** Fixed-length opaque; returns a copy so it outlives the packet buffer. */
  readOpaqueFixed(len: number): Buffer {
    const padded = len + pad4(len);
    this.need(padded, 'fixed opaque');
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += padded;
    return out;
  }

  readOpaque(max = this.stringMax): Buffer {
    const len = this.readLength(max, 'opaque');
    return this.readOpaqueFixed(len);
  }

  readString(max = this.stringMax): string {
    const len = this.readLength(max, 'string');
    const padded = len + pad4(len);
    this.need(padded, 'string body');
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += padded;
    return s;
  }

  readOptional<T>(read: (r: this) => T): T | null {
    const present = this.readUint();
    if (present === 0) return null;
    if (present !== 1) throw new LibvirtProtocolError(`XDR: invalid optional discriminant ${present}`);
    return read(this);
  }

  readOptionalString(): string | null {
    return this.readOptional((r) => r.readString());
  }

  /**
   * Variable-length array. `minElementBytes` lets us reject a count that
   * cannot fit in what is left before allocating anything.
   */
  readArray<T>(read: (r: this) => T, max = XDR_ARRAY_MAX, minElementBytes = 4): T[] {
    const n = this.readUint();
    if (n > max) throw new LibvirtProtocolError(`XDR: array length ${n} exceeds ${max}`);
    if (n * minElementBytes > this.end - this.pos) {
      throw new LibvirtProtocolError(`XDR: array length ${n} exceeds remaining data`);
    }
    const out: T[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = read(this);
    return out;
  }

  /** Throws unless every byte was consumed (catches layout mismatches early). */
  expectEnd(what = 'message'): void {
    if (this.pos !== this.end) {
      throw new LibvirtProtocolError(`XDR: ${this.end - this.pos} trailing bytes after ${what}`);
    }
  }

  private readLength(max: number, what: string): number {
    const len = this.readUint();
    if (len > max) throw new LibvirtProtocolError(`XDR: ${what} length ${len} exceeds limit ${max}`);
    return len;
  }
}
