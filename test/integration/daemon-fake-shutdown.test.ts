// SIGTERM with an unplug in flight: the daemon stops accepting, lets the
// operation finish (its reply and notification still go out), and exits 0.
// On the fake libvirtd, whose guest releases the DIMM after a known delay.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FakeDaemon, FakeLibvirtd, startOnFake } from '../helpers/fake-daemon.js';
import { expectRpcError, TestRpcClient } from '../helpers/rpc-client.js';

let fake: FakeLibvirtd;
let fd: FakeDaemon | undefined;

beforeEach(async () => {
  fake = await FakeLibvirtd.start();
});
afterEach(async () => {
  await fd?.stop();
  fd = undefined;
  await fake.stop();
});

describe('daemon shutdown', () => {
  it('finishes an unplug in flight on SIGTERM, refuses new work, and exits 0', async () => {
    const vmId = fake.addDomain({
      memoryMiB: 1024,
      dimms: [
        { alias: 'ua-slow', sizeMiB: 128 },
        { alias: 'ua-other', sizeMiB: 128 },
      ],
      eventDelayMs: 1500,
    }).uuid;
    fd = await startOnFake(fake);
    const d = fd.daemon;
    const c = await TestRpcClient.connect(d.url);
    const unplug = (alias: string) =>
      c.call<{ status: string; memSize: number }>('VM.hotunplugMemory', {
        vmID: vmId,
        params: { vmId, memory: { size: 128, node: 0, alias } },
        timeout: 20,
      });
    const pending = unplug('ua-slow');
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === 'ua-slow', 10_000);
    d.proc.kill('SIGTERM');
    await d.waitForLog((l) => l.msg === 'signal received', 5_000);

    // New work is refused while the running unplug drains.
    const refused = await expectRpcError(unplug('ua-other'));
    expect(refused.code).toBe(-32000);
    expect(refused.message).toMatch(/shutting down/);

    expect(await pending).toMatchObject({ status: 'removed', memSize: 1024 + 128 });
    await c.waitForNotification((n) => n.method === `|virt|device_removed|${vmId}`, 5_000);
    expect(await d.waitExit()).toBe(0);
    expect(fake.getDomainState(vmId)?.liveDimms).toEqual(['ua-other']);
    expect(d.logs.some((l) => l.msg === 'stopped')).toBe(true);
  });
});
