// libvirt's agent passthrough from our client against a real guest that has
// no agent channel: libvirt refuses at once, and the movability probe reports
// every DIMM as unknown instead of failing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtClient, LibvirtError } from '../../src/libvirt/index.js';
import { parseDomainXml } from '../../src/virt/domain-xml.js';
import { probeGuestMemory } from '../../src/virt/guest-memory.js';
import { type Guest, startGuest } from '../helpers/guest.js';

describe('guest agent passthrough, guest without an agent', () => {
  let g: Guest;
  let lv: LibvirtClient;
  beforeAll(async () => {
    g = await startGuest({ kind: 'cooperative', namePrefix: 'noagent' });
    lv = await LibvirtClient.connect({ reconnect: false });
  });
  afterAll(async () => {
    await lv?.close();
    await g?.destroy();
  });

  it("qemuAgentCommand rejects with libvirt's error; the probe says unknown", async () => {
    const dom = await lv.lookupByUUID(g.uuid);
    const err = await lv.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as LibvirtError).message).toMatch(/agent/i);
    const r = await probeGuestMemory(lv, dom, [{ alias: 'ua-x', base: '0x100000000', size: 128 }]);
    expect(r.views.get('ua-x')).toEqual({ online: false, zone: 'unknown' });
    // Refused at once: not an agent to stop waiting for.
    expect(r.silent).toBe(false);
    // Its live XML has no agent channel, so the daemon does not even ask.
    expect(parseDomainXml(await lv.getXMLDesc(dom, 0)).guestAgent).toBe(false);
    // The connection is still good for other calls.
    expect((await lv.getState(dom)).state).toBe(1);
  });
});
