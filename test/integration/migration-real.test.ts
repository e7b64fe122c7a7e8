// A real outgoing live migration (system libvirtd -> a second, session
// libvirtd on the same host, bandwidth-capped so it lasts) while the daemon
// serves the VM: libvirt's job stats say "outgoing migration" (operation 5),
// hot plug, hot unplug and set-memory answer 51 and leave the DIMMs as they
// were; once the job is aborted the same unplug succeeds.
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSocketPath, JobOperation, JobType, LibvirtClient } from '../../src/libvirt/index.js';
import type { Dimm, Stats } from '../helpers/api-types.js';
import { type DaemonProcess, startDaemon } from '../helpers/daemon.js';
import { hostReady, LIBVIRT_URI, useGuests, virsh } from '../helpers/guest.js';
import { freePort, type MigrationTarget, migrationTarget } from '../helpers/migration-target.js';
import { TestRpcClient as Client, expectRpcError } from '../helpers/rpc-client.js';
import { liveDimmAliases } from '../helpers/virsh.js';
import { waitFor } from '../helpers/wait.js';

const guests = useGuests();
let target: MigrationTarget;
let daemon: DaemonProcess | undefined;
let migration: ChildProcess | undefined;
let lv: LibvirtClient | undefined;
let guestName: string | undefined;
const cleanup: string[] = [];

beforeAll(async () => {
  await hostReady();
  target = await migrationTarget();
});
afterAll(async () => {
  migration?.kill('SIGKILL');
  if (guestName) await target.virsh('destroy', guestName).catch(() => undefined);
  await lv?.close();
  await daemon?.kill();
  for (const p of cleanup) rmSync(p, { recursive: true, force: true });
});

describe('an outgoing live migration between two libvirt daemons', () => {
  it('refuses memory operations with 51 while it runs, and they work again after it is aborted', async () => {
    const g = await guests.start({ kind: 'cooperative', namePrefix: 'mig', memoryMiB: 512 });
    guestName = g.name;
    daemon = await startDaemon({ domainPrefix: 'vmhostd-test-mig-' });
    const c = await Client.connect(daemon.url);
    const memTotal0 = await g.memTotalKiB();
    const plugged = await c.call<Stats>('VM.hotplugMemory', {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 128, node: 0 } },
    });
    const dimm = plugged.memoryDevices[0] as Dimm;
    await g.waitForMemTotal((k) => k >= memTotal0 + 127 * 1024, 60_000);

    // The destination's QEMU runs as the target's user: give it a serial log it may write.
    const console = target.writableFile(`${g.name}.console.log`);
    cleanup.push(console.slice(0, console.lastIndexOf('/')));
    const xml = (await virsh(['dumpxml', '--migratable', g.name])).replaceAll(g.consolePath, console);
    const xmlPath = `${console}.xml`;
    writeFileSync(xmlPath, xml);
    const port = await freePort();
    migration = spawn(
      'virsh',
      [
        '-c',
        LIBVIRT_URI,
        'migrate',
        '--live',
        '--bandwidth',
        '1',
        '--xml',
        xmlPath,
        g.name,
        target.uri,
        '--migrateuri',
        `tcp://127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const exited = new Promise<number | null>((r) => migration?.once('exit', (code) => r(code)));
    await waitFor(
      'the outgoing migration job',
      async () => /Outgoing migration/.test(await virsh(['domjobinfo', g.name])),
      60_000,
    );

    lv = await LibvirtClient.connect({ socketPath: defaultSocketPath() });
    const js = await lv.getJobStats(await lv.lookupByUUID(g.uuid));
    expect(js.type).toBe(JobType.UNBOUNDED);
    expect(js.params.operation).toBe(JobOperation.MIGRATION_OUT);

    const unplug = {
      vmID: g.uuid,
      params: { vmId: g.uuid, memory: { size: 128, node: 0, alias: dimm.alias } },
    };
    const refused: [string, unknown][] = [
      ['VM.hotplugMemory', { vmID: g.uuid, params: { vmId: g.uuid, memory: { size: 128, node: 0 } } }],
      ['VM.hotunplugMemory', unplug],
      ['VM.setMemory', { vmID: g.uuid, memory: 512 * 1024 * 1024 }],
    ];
    for (const [method, params] of refused) {
      const e = await expectRpcError(c.call(method, params));
      expect(e.code, method).toBe(51);
    }
    expect(await liveDimmAliases(g.name)).toEqual([dimm.alias]);
    // Still migrating all along: the refusals did not race the end of the job.
    expect(await virsh(['domjobinfo', g.name])).toMatch(/Outgoing migration/);

    await virsh(['domjobabort', g.name]);
    expect(await exited).not.toBe(0);
    await waitFor(
      'the job to end',
      async () => /Job type:\s+None/.test(await virsh(['domjobinfo', g.name])),
      60_000,
    );
    expect((await lv.getJobStats(await lv.lookupByUUID(g.uuid))).type).toBe(JobType.NONE);
    const removed = await c.call<{ status: string }>('VM.hotunplugMemory', { ...unplug, timeout: 60 });
    expect(removed.status).toBe('removed');
    await c.close();
  });
});
