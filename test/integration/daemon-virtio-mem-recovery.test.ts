// A virtio-mem resize in flight survives a SIGKILL of the daemon (issue 13,
// deliver item 7), on a real virtio-mem guest: the restarted daemon adopts
// the resize from its metadata mark and reports its completion late. The
// guest is paused while the request is made, so the resize is certainly
// still pending when the mark is written and the daemon killed; resuming it
// lets the guest's driver finish the resize under the restarted daemon.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { hostReady, useGuests } from '../helpers/guest.js';
import { TestRpcClient as Client, vmStatusStats } from '../helpers/rpc-client.js';
import { virsh } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';

const guests = useGuests();
let daemons: DaemonProcess[] = [];
let clients: Client[] = [];
let dir: string;
let config: string;

beforeAll(async () => {
  await hostReady();
  dir = mkdtempSync(join(tmpdir(), 'vmhostd-vmr-'));
  config = join(dir, 'vmhostd.toml');
  // Long enough that a loaded host never stalls the resize before the guest is resumed.
  writeFileSync(config, '[memory]\nresize_stall_timeout = 120\n');
});
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  clients = [];
  await Promise.all(daemons.map((d) => d.kill()));
  daemons = [];
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function daemon(): Promise<{ d: DaemonProcess; c: Client }> {
  const d = await startDaemon({ domainPrefix: 'vmhostd-test-vmr-', args: ['--config', config] });
  daemons.push(d);
  const c = await Client.connect(d.url);
  clients.push(c);
  return { d, c };
}

/** Our metadata as libvirt holds it in the live definition. */
async function ourMetadata(name: string): Promise<string> {
  return virsh('metadata', name, '--uri', 'http://ovirt.org/vmhostd/1.0', '--live').catch(() => '');
}

describe('virtio-mem resize across a daemon restart (real guest)', () => {
  it('SIGKILLed mid-resize: the restarted daemon adopts the mark, shows the device resizing, and reports the completion late', async () => {
    const g = await guests.start({
      kind: 'virtio-mem',
      memoryMiB: 256,
      maxMemoryMiB: 2048,
      namePrefix: 'vmr-kill',
      virtioMem: [{ alias: 'ua-vmem0', sizeMiB: 1024, requestedMiB: 0 }],
    });
    const memTotal0 = await g.memTotalKiB();
    let { d, c } = await daemon();
    expect((await c.stats(g.uuid)).memSize).toBe(256);

    await virsh('suspend', g.name);
    void c
      .call('VM.resizeMemoryDevice', { vmID: g.uuid, alias: 'ua-vmem0', requested: 512, timeout: 600 })
      .catch(() => undefined);
    // Pending a second later: the daemon records it in the domain's metadata.
    await d.waitForLog((l) => l.msg === 'marked resizing', 30_000);
    const md = await ourMetadata(g.name);
    expect(md).toMatch(/<resizing>/);
    expect(md).toMatch(
      /<device alias="ua-vmem0" since="[^"]+" requested="512" deadline="[^"]+" onFailure="settle"\/>/,
    );
    await d.kill();

    ({ d, c } = await daemon());
    const s = await c.stats(g.uuid);
    expect(s.memSize).toBe(256);
    expect(s.memoryDevices[0]).toMatchObject({
      model: 'virtio-mem',
      alias: 'ua-vmem0',
      requested: 512,
      current: 0,
      state: 'resizing',
    });

    await virsh('resume', g.name);
    // Nobody waits for it any more: its end comes as a late size change, then the VM's status.
    const done = await c.waitForNotification(
      (n) =>
        n.method === `|virt|memory_device_size_changed|${g.uuid}` &&
        (n.params as { late?: boolean }).late === true,
      120_000,
    );
    expect(done.params).toEqual({ alias: 'ua-vmem0', requested: 512, current: 512, late: true });
    const st = await c.waitForNotification(
      (n) => n.method === `|virt|VM_status|${g.uuid}` && vmStatusStats(n, g.uuid).memSize === 256 + 512,
      60_000,
    );
    expect(vmStatusStats(st, g.uuid).memoryDevices[0]).toMatchObject({ state: 'plugged', current: 512 });
    await g.waitForMemTotal((kib) => kib === memTotal0 + 512 * 1024, 60_000);
    // The mark is cleared once the end is reported.
    await waitFor(
      'the resize mark to be cleared',
      async () => !(await ourMetadata(g.name)).includes('<resizing'),
      30_000,
    );
    const after = (await c.call<Stats[]>('VM.getStats', { vmID: g.uuid }))[0];
    expect(after?.memoryDevices[0]).toMatchObject({ requested: 512, current: 512, state: 'plugged' });
  });
});
