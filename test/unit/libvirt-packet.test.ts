import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LibvirtProtocolError } from '../../src/libvirt/errors.js';
import {
  bodyReader,
  encodePacket,
  MessageType,
  MIN_PACKET_BYTES,
  PacketParser,
} from '../../src/libvirt/packet.js';
import { REMOTE_PROGRAM } from '../../src/libvirt/protocol.js';

const pkt = (serial: number, body: string) =>
  encodePacket({ prog: REMOTE_PROGRAM, vers: 1, proc: 14, type: MessageType.REPLY, serial, status: 0 }, (w) =>
    w.writeString(body),
  );

describe('packet framing', () => {
  it('writes the length word counting itself, then the header', () => {
    const p = pkt(7, 'xy');
    expect(p.readUInt32BE(0)).toBe(p.length);
    expect(p.length).toBe(MIN_PACKET_BYTES + 8);
    expect(p.readUInt32BE(4)).toBe(0x20008086);
    expect(p.readUInt32BE(20)).toBe(7);
  });

  it('reassembles packets from arbitrary chunkings (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 100 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
        (bodies, cuts) => {
          const stream = Buffer.concat(bodies.map((b, i) => pkt(i + 1, b)));
          const parser = new PacketParser();
          const got: string[] = [];
          let pos = 0;
          let ci = 0;
          while (pos < stream.length) {
            const n = cuts[ci++ % cuts.length]!;
            for (const p of parser.push(stream.subarray(pos, pos + n))) {
              expect(p.header.serial).toBe(got.length + 1);
              got.push(bodyReader(p).readString());
            }
            pos += n;
          }
          expect(got).toEqual(bodies);
          expect(parser.pendingBytes).toBe(0);
        },
      ),
    );
  });

  it('returns several packets from one chunk', () => {
    const parser = new PacketParser();
    const out = parser.push(Buffer.concat([pkt(1, 'a'), pkt(2, 'b'), pkt(3, 'c')]));
    expect(out.map((p) => p.header.serial)).toEqual([1, 2, 3]);
  });

  it('keeps a partial packet until the rest arrives', () => {
    const parser = new PacketParser();
    const p = pkt(1, 'hello');
    expect(parser.push(p.subarray(0, 2))).toEqual([]);
    expect(parser.push(p.subarray(2, 30))).toEqual([]);
    expect(parser.pendingBytes).toBe(30);
    const [done] = parser.push(p.subarray(30));
    expect(done && bodyReader(done).readString()).toBe('hello');
  });

  it('rejects a length smaller than the header', () => {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(8, 0);
    expect(() => new PacketParser().push(b)).toThrow(/smaller than the header/);
  });

  it('rejects a length over the cap as soon as the length word is in', () => {
    const parser = new PacketParser(1024);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(1025, 0);
    expect(() => parser.push(b)).toThrow(LibvirtProtocolError);
    expect(() => new PacketParser().push(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(/exceeds the limit/);
  });
});
