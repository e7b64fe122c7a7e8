// The guest helper's own promises: persistent definitions, boot DIMMs, and
// cleanup after each test. Other integration tests rely on them.

import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type Guest, useGuests, virsh } from '../helpers/guest.js';

async function domainExists(name: string): Promise<boolean> {
  const names = await virsh(['list', '--all', '--name']);
  return names.split('\n').some((n) => n.trim() === name);
}

describe('guest helper', () => {
  // Registered before useGuests(): after-hooks run in reverse order, so this
  // one checks what useGuests' own cleanup did once the test ended, in
  // whatever order the tests run (alone or shuffled).
  let scoped: Guest | undefined;
  afterEach(async () => {
    const g = scoped;
    scoped = undefined;
    if (g) expect(await domainExists(g.name)).toBe(false);
  });
  const guests = useGuests();

  it('boots a persistent guest with boot DIMMs and undefines it on destroy', async () => {
    const guest = await guests.start({
      kind: 'cooperative',
      memoryMiB: 384,
      bootDimmsMiB: [128, 256],
      persistent: true,
      namePrefix: 'helper-persist',
    });
    expect(guest.name).toMatch(/^vmhostd-test-helper-persist-[0-9a-f]{8}$/);
    const info = await virsh(['dominfo', guest.name]);
    expect(info).toMatch(/Persistent:\s+yes/);
    expect(info).toContain(guest.uuid);
    const live = await virsh(['dumpxml', guest.name]);
    expect(live.match(/<memory model='dimm'/g)).toHaveLength(2);
    expect(live).toMatch(/<memory unit='KiB'>786432<\/memory>/);
    // Boot DIMMs are onlined by the guest at boot: all 768 MiB count (minus kernel reservations).
    const kib = await guest.memTotalKiB();
    expect(kib).toBeGreaterThan(640 * 1024);
    expect(kib).toBeLessThanOrEqual(768 * 1024);

    await guest.destroy();
    await guest.destroy(); // idempotent
    expect(await domainExists(guest.name)).toBe(false);
    expect(existsSync(guest.consolePath)).toBe(false);
  });

  it('leaves a transient guest running for the test that started it, and destroys it after', async () => {
    scoped = await guests.start({ kind: 'cooperative', namePrefix: 'helper-scope' });
    expect(await virsh(['domstate', scoped.name])).toMatch(/running/);
    expect(await virsh(['dominfo', scoped.name])).toMatch(/Persistent:\s+no/);
    // The afterEach above asserts it is gone once this test has ended.
  });

  it('reports a console deadline with the console tail', async () => {
    const guest = await guests.start({ kind: 'silent', memoryMiB: 256, namePrefix: 'helper-deadline' });
    await expect(guest.waitForConsole(/never printed/, 1_500)).rejects.toThrow(
      /no console line matched .*within 1500 ms; console tail[\s\S]*VMHOST-GUEST/,
    );
    await expect(guest.waitForMemTotal((k) => k < 0, 1_500)).rejects.toThrow(/MemTotal never satisfied/);
  });
});
