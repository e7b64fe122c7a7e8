import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LibvirtProtocolError } from '../../src/libvirt/errors.js';
import {
  readDomain,
  readRemoteError,
  uuidFromBytes,
  uuidToBytes,
  writeDomain,
  writeRemoteError,
} from '../../src/libvirt/protocol.js';
import { XdrReader, XdrWriter } from '../../src/libvirt/xdr.js';

const reader = (w: XdrWriter) => new XdrReader(Buffer.from(w.finish()));

describe('XDR codec', () => {
  it('encodes ints big-endian and strings padded to 4 bytes', () => {
    const w = new XdrWriter(4);
    w.writeInt(-2)
      .writeUint(0xffffffff)
      .writeString('abcde')
      .writeHyper(-1n)
      .writeUhyper(2n ** 64n - 1n);
    const b = w.finish();
    expect(b.subarray(0, 8).toString('hex')).toBe('fffffffeffffffff');
    expect(b.subarray(8, 20).toString('hex')).toBe(`00000005${Buffer.from('abcde').toString('hex')}000000`);
    expect(b.length).toBe(8 + 12 + 16);
    const r = new XdrReader(Buffer.from(b));
    expect([r.readInt(), r.readUint(), r.readString(), r.readHyper(), r.readUhyper()]).toEqual([
      -2,
      0xffffffff,
      'abcde',
      -1n,
      2n ** 64n - 1n,
    ]);
    r.expectEnd();
  });

  it('round-trips arbitrary values (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -0x80000000, max: 0x7fffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.string({ unit: 'grapheme', maxLength: 200 }),
        fc.option(fc.string(), { nil: null }),
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 50 }),
        fc.boolean(),
        (i, u, h, uh, s, os, op, arr, b) => {
          const w = new XdrWriter(8);
          w.writeInt(i).writeUint(u).writeHyper(h).writeUhyper(uh).writeString(s).writeOptionalString(os);
          w.writeOpaque(op)
            .writeArray(arr, (ww, v) => ww.writeInt(v))
            .writeBool(b);
          expect(w.length % 4).toBe(0);
          const r = reader(w);
          expect(r.readInt()).toBe(i);
          expect(r.readUint()).toBe(u);
          expect(r.readHyper()).toBe(h);
          expect(r.readUhyper()).toBe(uh);
          expect(r.readString()).toBe(s);
          expect(r.readOptionalString()).toBe(os);
          expect(new Uint8Array(r.readOpaque())).toEqual(op);
          expect(r.readArray((rr) => rr.readInt())).toEqual(arr);
          expect(r.readBool()).toBe(b);
          r.expectEnd();
        },
      ),
    );
  });

  it('round-trips domains and remote_error', () => {
    fc.assert(
      fc.property(fc.string(), fc.uuid(), fc.integer({ min: -1, max: 100000 }), (name, uuid, id) => {
        const w = new XdrWriter();
        writeDomain(w, { name, uuid, id });
        writeRemoteError(w, { code: 42, domain: 10, message: `no domain ${name}` });
        const r = reader(w);
        expect(readDomain(r)).toEqual({ name, uuid: uuid.toLowerCase(), id });
        const e = readRemoteError(r);
        expect([e.code, e.domain, e.message, e.level]).toEqual([42, 10, `no domain ${name}`, 2]);
        r.expectEnd();
      }),
    );
  });

  it('converts UUIDs both ways and rejects non-UUIDs', () => {
    const u = '74dd142d-0583-48db-b1b8-efb7fed2b7b2';
    expect(uuidFromBytes(uuidToBytes(u))).toBe(u);
    expect(uuidFromBytes(uuidToBytes(u.toUpperCase().replace(/-/g, '')))).toBe(u);
    expect(() => uuidToBytes('nope')).toThrow(TypeError);
  });

  it('rejects truncated input with LibvirtProtocolError', () => {
    const w = new XdrWriter();
    w.writeString('hello world').writeUhyper(5n);
    const full = Buffer.from(w.finish());
    for (let cut = 0; cut < full.length; cut++) {
      const r = new XdrReader(full.subarray(0, cut));
      expect(() => {
        r.readString();
        r.readUhyper();
      }).toThrow(LibvirtProtocolError);
    }
  });

  it('rejects lengths over the limit before allocating', () => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(0xfffffff0, 0);
    expect(() => new XdrReader(b).readString()).toThrow(/exceeds limit/);
    expect(() => new XdrReader(b).readOpaque()).toThrow(LibvirtProtocolError);
    expect(() => new XdrReader(b).readArray((r) => r.readInt())).toThrow(LibvirtProtocolError);
    const small = Buffer.alloc(8);
    small.writeUInt32BE(1000, 0); // 1000 ints cannot fit in 4 bytes
    expect(() => new XdrReader(small).readArray((r) => r.readInt())).toThrow(/remaining data/);
  });

  it('rejects invalid optional discriminants and bools', () => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(7, 0);
    expect(() => new XdrReader(b).readOptionalString()).toThrow(LibvirtProtocolError);
    expect(() => new XdrReader(b).readBool()).toThrow(LibvirtProtocolError);
  });

  it('never throws anything but LibvirtProtocolError on random bytes (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const r = new XdrReader(Buffer.from(bytes));
        try {
          readDomain(r);
          readRemoteError(r);
          r.readArray(readDomain);
        } catch (e) {
          expect(e).toBeInstanceOf(LibvirtProtocolError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses to encode out-of-range numbers', () => {
    expect(() => new XdrWriter().writeInt(2 ** 31)).toThrow(RangeError);
    expect(() => new XdrWriter().writeUint(-1)).toThrow(RangeError);
    expect(() => new XdrWriter().writeOpaqueFixed(Buffer.alloc(3), 16)).toThrow(RangeError);
  });
});
