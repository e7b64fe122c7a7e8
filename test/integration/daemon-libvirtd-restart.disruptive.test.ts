// libvirtd restarted under the daemon: it keeps answering, fails a pending
// call clearly instead of hanging, reconnects with backoff, re-registers its
// event callbacks and reconciles; also after a crash that the host's service
// manager restarts. Runs alone (it restarts the shared libvirtd).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { type Guest, hostReady, startGuest } from '../helpers/guest.js';
import { crashLibvirtd, startLibvirtd, stopLibvirtd } from '../helpers/libvirtd.js';
import { TestRpcClient as Client, expectRpcError, type TestRpcClient } from '../helpers/rpc-client.js';

describe('libvirtd restart under the daemon', () => {
  let coop: Guest;
  let silent: Guest;
  let d: DaemonProcess;
  let c: TestRpcClient;

  beforeAll(async () => {
    await hostReady();
    [coop, silent] = await Promise.all([
      startGuest({ kind: 'cooperative', namePrefix: 'r-coop' }),
      startGuest({ kind: 'silent', namePrefix: 'r-sil' }),
    ]);
    d = await startDaemon({ domainPrefix: 'vmhostd-test-r-' });
    c = await Client.connect(d.url);
  });
  afterAll(async () => {
    await startLibvirtd();
    await c?.close();
    await d?.stop();
    await coop?.destroy();
    await silent?.destroy();
  });

  async function plugUnplugWorks(): Promise<void> {
    const s = await c.call<Stats>('VM.hotplugMemory', {
      vmID: coop.uuid,
      params: { vmId: coop.uuid, memory: { size: 128, node: 0 } },
    });
    const dimm = s.memoryDevices.at(-1)!;
    const r = await c.call<{ status: string }>('VM.hotunplugMemory', {
      vmID: coop.uuid,
      params: { vmId: coop.uuid, memory: { size: 128, node: 0, alias: dimm.alias } },
      timeout: 30,
    });
    expect(r.status).toBe('removed');
  }

  it('fails a pending unplug clearly, answers ping while libvirtd is down, and recovers events', async () => {
    await plugUnplugWorks();
    const s = await c.call<Stats>('VM.hotplugMemory', {
      vmID: silent.uuid,
      params: { vmId: silent.uuid, memory: { size: 128, node: 0 } },
    });
    const dimm = s.memoryDevices[0]!;
    const pending = expectRpcError(
      c.call('VM.hotunplugMemory', {
        vmID: silent.uuid,
        params: { vmId: silent.uuid, memory: { size: 128, node: 0, alias: dimm.alias } },
        timeout: 120,
      }),
    );
    await d.waitForLog((l) => l.msg === 'detach requested' && l.alias === dimm.alias, 20_000);
    const t0 = Date.now();
    await stopLibvirtd();
    const e = await pending;
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(e.code).toBe(85);
    expect(e.reason).toBe('libvirt-error');
    expect(e.message).toMatch(/libvirt/i);

    expect(await c.call('Host.ping')).toBe(true);
    const caps = await c.call<{ libvirtConnected: boolean }>('Host.getCapabilities');
    expect(caps.libvirtConnected).toBe(false);

    await startLibvirtd();
    await d.waitForLog((l) => l.msg === 'libvirt connection restored', 60_000);
    expect(await c.call('Host.ping')).toBe(true);
    await plugUnplugWorks();
  });

  it('recovers from a libvirtd crash that the host restarts (Restart=on-failure)', async () => {
    const restored = d.logs.filter((l) => l.msg === 'libvirt connection restored').length;
    await crashLibvirtd('the daemon must reconnect after a crash as after a restart');
    await d.waitForLog(
      (l) =>
        l.msg === 'libvirt connection restored' && d.logs.filter((x) => x.msg === l.msg).length > restored,
      60_000,
    );
    const list = await c.call<{ vmId: string }[]>('Host.getVMList');
    expect(list.map((v) => v.vmId)).toEqual(expect.arrayContaining([coop.uuid, silent.uuid]));
    await plugUnplugWorks();
  });

  it('recovers from a restart while idle', async () => {
    await stopLibvirtd();
    expect(await c.call('Host.ping')).toBe(true);
    const restored = d.logs.filter((l) => l.msg === 'libvirt connection restored').length;
    await startLibvirtd();
    await d.waitForLog(
      (l) =>
        l.msg === 'libvirt connection restored' &&
        d.logs.indexOf(l) >= 0 &&
        d.logs.filter((x) => x.msg === l.msg).length > restored,
      60_000,
    );
    const list = await c.call<{ vmId: string }[]>('Host.getVMList');
    expect(list.map((v) => v.vmId)).toEqual(expect.arrayContaining([coop.uuid, silent.uuid]));
    await plugUnplugWorks();
  });
});
