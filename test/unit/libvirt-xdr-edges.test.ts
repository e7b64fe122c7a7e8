// Edges of the XDR codec that mutation testing found unguarded: exact range
// limits, buffer growth, error messages that name what failed, and the
// reader's bounds and end checks.
import { describe, expect, it } from 'vitest';
import { LibvirtProtocolError } from '../../src/libvirt/errors.js';
import { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';

const hex = (w: XdrWriter) => w.finish().toString('hex');
const reader = (h: string) => new XdrReader(Buffer.from(h, 'hex'));

describe('XdrWriter limits', () => {
  it('takes the exact int range and refuses one beyond each end, and non-integers', () => {
    expect(hex(new XdrWriter().writeInt(-0x80000000).writeInt(0x7fffffff))).toBe('800000007fffffff');
    expect(() => new XdrWriter().writeInt(-0x80000001)).toThrow(/^XDR int out of range: -2147483649$/);
    expect(() => new XdrWriter().writeInt(0x80000000)).toThrow(/^XDR int out of range: 2147483648$/);
    expect(() => new XdrWriter().writeInt(1.5)).toThrow(RangeError);
  });

  it('takes the exact unsigned range and refuses one beyond each end, and non-integers', () => {
    expect(hex(new XdrWriter().writeUint(0).writeUint(0xffffffff))).toBe('00000000ffffffff');
    expect(() => new XdrWriter().writeUint(-1)).toThrow(/^XDR unsigned int out of range: -1$/);
    expect(() => new XdrWriter().writeUint(0x100000000)).toThrow(
      /^XDR unsigned int out of range: 4294967296$/,
    );
    expect(() => new XdrWriter().writeUint(0.5)).toThrow(RangeError);
  });

  it('names the expected size of a fixed opaque', () => {
    expect(() => new XdrWriter().writeOpaqueFixed(Buffer.alloc(3), 16)).toThrow(
      /^XDR fixed opaque must be 16 bytes, got 3$/,
    );
  });

  it('writes strings as UTF-8 byte counts, padded with zeros', () => {
    // 'é' is two bytes in UTF-8.
    expect(hex(new XdrWriter().writeString('aé'))).toBe('0000000361c3a900');
    expect(hex(new XdrWriter().writeString('abcd'))).toBe('0000000461626364');
  });

  it('writes an absent optional as 0 and a present one as 1 then the value', () => {
    expect(hex(new XdrWriter().writeOptionalString(null).writeOptionalString(undefined))).toBe(
      '0000000000000000',
    );
    expect(hex(new XdrWriter().writeOptional(7, (w, v) => w.writeInt(v)))).toBe('0000000100000007');
    expect(hex(new XdrWriter().writeOptionalString(''))).toBe('0000000100000000');
  });

  it('grows from a tiny buffer without losing or reordering bytes, and keeps the reserve zeroed', () => {
    const w = new XdrWriter(1, 8);
    for (let i = 0; i < 100; i++) w.writeUint(i);
    w.writeString('x'.repeat(1000));
    const b = w.finish();
    expect(b.length).toBe(8 + 400 + 4 + 1000);
    expect(b.subarray(0, 8).equals(Buffer.alloc(8))).toBe(true);
    for (let i = 0; i < 100; i++) expect(b.readUInt32BE(8 + 4 * i)).toBe(i);
    expect(b.readUInt32BE(408)).toBe(1000);
    expect(b.subarray(412).toString()).toBe('x'.repeat(1000));
  });

  it('grows exactly to fit and past a doubling', () => {
    const w = new XdrWriter(16);
    w.writeOpaqueFixed(Buffer.alloc(16, 1), 16); // exactly the initial size
    w.writeOpaqueFixed(Buffer.alloc(64, 2), 64); // more than twice the size
    const b = w.finish();
    expect(b.length).toBe(80);
    expect([b[15], b[16], b[79]]).toEqual([1, 2, 2]);
  });

  it('patches a u32 in place', () => {
    const w = new XdrWriter().writeUint(0).writeUint(5);
    w.patchUint(0, 0xdeadbeef);
    expect(hex(w)).toBe('deadbeef00000005');
  });
});

describe('XdrReader limits', () => {
  it('refuses bounds outside the buffer', () => {
    const b = Buffer.alloc(8);
    expect(() => new XdrReader(b, -1)).toThrow(/^XDR reader: bad bounds$/);
    expect(() => new XdrReader(b, 0, 9)).toThrow(LibvirtProtocolError);
    expect(() => new XdrReader(b, 5, 4)).toThrow(LibvirtProtocolError);
    expect(new XdrReader(b, 8, 8).remaining).toBe(0);
    expect(new XdrReader(b, 0, 8).remaining).toBe(8);
  });

  it('reads only inside [offset, end) and tracks its position', () => {
    const r = new XdrReader(Buffer.from('000000010000000200000003', 'hex'), 4, 8);
    expect(r.offset).toBe(4);
    expect(r.remaining).toBe(4);
    expect(r.readUint()).toBe(2);
    expect(r.offset).toBe(8);
    expect(r.remaining).toBe(0);
    expect(() => r.readUint()).toThrow(/^XDR: truncated unsigned int at offset 8 \(need 4 bytes, have 0\)$/);
  });

  it('names the truncated type', () => {
    expect(() => reader('000000').readInt()).toThrow(/truncated int at offset 0 \(need 4 bytes, have 3\)/);
    expect(() => reader('00000000').readHyper()).toThrow(/truncated hyper /);
    expect(() => reader('00000000').readUhyper()).toThrow(/truncated unsigned hyper /);
    expect(() => reader('0000').readOpaqueFixed(4)).toThrow(/truncated fixed opaque /);
    expect(() => reader('0000000561').readString()).toThrow(/truncated string body /);
  });

  it('names the bad bool, discriminant and oversized lengths', () => {
    expect(() => reader('00000002').readBool()).toThrow(/^XDR: invalid bool 2$/);
    expect(() => reader('00000002').readOptionalString()).toThrow(/^XDR: invalid optional discriminant 2$/);
    expect(() => reader('00000005').readString(4)).toThrow(/^XDR: string length 5 exceeds limit 4$/);
    expect(() => reader('00000005').readOpaque(4)).toThrow(/^XDR: opaque length 5 exceeds limit 4$/);
    expect(() => reader('00000003').readArray((r) => r.readInt(), 2)).toThrow(
      /^XDR: array length 3 exceeds 2$/,
    );
  });

  it('takes lengths exactly at their limit', () => {
    expect(reader('0000000461626364').readString(4)).toBe('abcd');
    expect(reader('0000000401020304').readOpaque(4).toString('hex')).toBe('01020304');
    expect(reader('000000020000000100000002').readArray((r) => r.readInt(), 2)).toEqual([1, 2]);
  });

  it('rejects an array count that cannot fit in what is left, but takes one that exactly fits', () => {
    expect(() => reader('00000003000000010000000200').readArray((r) => r.readInt(), 10, 4)).toThrow(
      /^XDR: array length 3 exceeds remaining data$/,
    );
    expect(reader('00000002000000010000000200').readArray((r) => r.readInt(), 10, 4)).toEqual([1, 2]);
    // With 8-byte elements, 2 need 16 bytes: 12 left is too few.
    expect(() => reader('00000002000000000000000000000000').readArray((r) => r.readHyper(), 10, 8)).toThrow(
      /remaining data/,
    );
  });

  it('converts unsigned hypers up to 2^53-1 and refuses beyond', () => {
    expect(reader('001fffffffffffff').readUhyperNumber()).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => reader('0020000000000000').readUhyperNumber()).toThrow(
      /^XDR: hyper 9007199254740992 too large$/,
    );
  });

  it('expectEnd passes at the end and names the trailing bytes otherwise', () => {
    const r = reader('0000000100000002');
    r.readUint();
    expect(() => r.expectEnd('reply')).toThrow(/^XDR: 4 trailing bytes after reply$/);
    expect(() => r.expectEnd()).toThrow(/after message$/);
    r.readUint();
    expect(() => r.expectEnd()).not.toThrow();
  });
});
