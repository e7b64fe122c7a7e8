// What libvirt's failures mean to the domain layer, decided by code and
// domain where libvirt gives one, by text only where its code is generic.
// Test data: the messages libvirtd 9.0 of the test host actually sent.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LibvirtConnectionError, LibvirtError } from '../../src/libvirt/errors.js';
import { bodyReader, PacketParser } from '../../src/libvirt/packet.js';
import { readRemoteError } from '../../src/libvirt/protocol.js';
import { isNoDomain, isQemuGoingAway, isRejectedByGuest } from '../../src/virt/libvirt-errors.js';

/** The detach rejection as the real libvirtd 9.0 sent it (golden packet). */
function capturedRejection(): LibvirtError {
  const golden = JSON.parse(
    readFileSync(new URL('../fixtures/libvirt/golden-packets.json', import.meta.url), 'utf8'),
  ) as { packets: Record<string, { hex: string }> };
  const parser = new PacketParser();
  const [p] = parser.push(Buffer.from(golden.packets.detachRejectedReply!.hex, 'hex'));
  const e = readRemoteError(bodyReader(p!));
  return new LibvirtError(e.message ?? '', e.code, e.domain, e.level);
}

// Captured from libvirtd 9.0 here: a LIVE detach on a defined, shut-off domain
// (code 55, VIR_FROM_DOMAIN 20), and a detach pending while the guest was
// destroyed (`virsh destroy`; logged by virt-manager.test.ts's silent guest).
const notRunning = new LibvirtError('Requested operation is not valid: domain is not running', 55, 20);
const monitorEof = new LibvirtError(
  "internal error: End of file from qemu monitor (vm='vmhostd-test-virt-silent-98aa3f43')",
  1,
  10,
);

describe('libvirt errors', () => {
  it("recognises the guest's rejection of a detach by code 9 from the QEMU driver and its text", () => {
    const rejected = capturedRejection();
    expect([rejected.code, rejected.domain]).toEqual([9, 10]);
    expect(isRejectedByGuest(rejected)).toBe(true);
    // The same words under another code or driver are not a rejection.
    expect(isRejectedByGuest(new LibvirtError(rejected.message, 1, 10))).toBe(false);
    expect(isRejectedByGuest(new LibvirtError(rejected.message, 9, 20))).toBe(false);
    expect(isRejectedByGuest(new Error(rejected.message))).toBe(false);
    expect(isRejectedByGuest(monitorEof)).toBe(false);
    expect(isRejectedByGuest(notRunning)).toBe(false);
  });

  it('recognises QEMU going away: "not running" by its code, the monitor closing by its text under a generic code', () => {
    expect(isQemuGoingAway(notRunning)).toBe(true);
    // Code 55 decides, whatever the words.
    expect(isQemuGoingAway(new LibvirtError('Requested operation is not valid: anything', 55, 20))).toBe(
      true,
    );
    expect(isQemuGoingAway(monitorEof)).toBe(true);
    expect(isQemuGoingAway(new LibvirtError(monitorEof.message, 42, 10))).toBe(false);
    expect(isQemuGoingAway(capturedRejection())).toBe(false);
    expect(isQemuGoingAway(new LibvirtError('internal error: something else', 1, 10))).toBe(false);
    expect(isQemuGoingAway(new LibvirtConnectionError('End of file from qemu monitor'))).toBe(false);
  });

  it('recognises a missing domain by code 42', () => {
    expect(isNoDomain(new LibvirtError("Domain not found: no domain with matching uuid 'x'", 42, 10))).toBe(
      true,
    );
    expect(isNoDomain(notRunning)).toBe(false);
  });
});
