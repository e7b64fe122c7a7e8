// A second libvirt daemon to migrate test guests to, on the same host without
// touching the system one: the session libvirtd of the unprivileged account
// `vmhostd-mig`, with its own host UUID (else libvirt refuses a migration to
// "the same host"). The account and its config are made here when missing
// (tests run as root); the daemon is started on demand and exits by itself
// after a while without clients.
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { waitFor } from './wait.js';

export const MIG_USER = 'vmhostd-mig';

function run(
  cmd: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    );
  });
}

export interface MigrationTarget {
  /** The destination URI for `virsh migrate`. */
  uri: string;
  uid: number;
  gid: number;
  /** virsh against the target daemon. */
  virsh(...args: string[]): Promise<string>;
  /** A file the target's QEMU (running as MIG_USER) can write: for the guest's serial log. */
  writableFile(name: string): string;
}

const HOST_UUID = '8f0c3a4e-2b1d-4c5e-9a7b-0d1e2f3a4b5c';

export async function migrationTarget(): Promise<MigrationTarget> {
  let id = await run('id', ['-u', MIG_USER]);
  if (id.code !== 0) {
    const add = await run('useradd', ['--create-home', '--shell', '/bin/sh', MIG_USER]);
    if (add.code !== 0) throw new Error(`cannot create user ${MIG_USER}: ${add.err.trim()}`);
    id = await run('id', ['-u', MIG_USER]);
  }
  const uid = Number(id.out.trim());
  const gid = Number((await run('id', ['-g', MIG_USER])).out.trim());
  const confDir = `/home/${MIG_USER}/.config/libvirt`;
  if (!existsSync(`${confDir}/libvirtd.conf`)) {
    for (const d of [`/home/${MIG_USER}/.config`, confDir]) {
      mkdirSync(d, { recursive: true });
      chownSync(d, uid, gid);
    }
    writeFileSync(`${confDir}/libvirtd.conf`, `host_uuid = "${HOST_UUID}"\n`);
    chownSync(`${confDir}/libvirtd.conf`, uid, gid);
  }
  const runtime = `/run/user/${uid}`;
  if (!existsSync(runtime)) {
    mkdirSync(runtime, { recursive: true, mode: 0o700 });
    chownSync(runtime, uid, gid);
  }
  const socket = `${runtime}/libvirt/libvirt-sock`;
  const uri = `qemu+unix:///session?socket=${socket}`;
  const virsh = async (...args: string[]): Promise<string> => {
    const r = await run('virsh', ['-q', '-c', uri, ...args], 60_000);
    if (r.code !== 0) throw new Error(`virsh -c ${uri} ${args.join(' ')}: ${r.err.trim()}`);
    return r.out;
  };
  const up = async () => (await run('virsh', ['-q', '-c', uri, 'uri'], 10_000)).code === 0;
  if (!(await up())) {
    const start = await run('su', [
      '-s',
      '/bin/sh',
      MIG_USER,
      '-c',
      `XDG_RUNTIME_DIR=${runtime} /usr/sbin/libvirtd --daemon --timeout 600`,
    ]);
    if (start.code !== 0) throw new Error(`cannot start ${MIG_USER}'s libvirtd: ${start.err.trim()}`);
    await waitFor(`${MIG_USER}'s libvirtd to answer`, up, 30_000);
  }
  const caps = await virsh('capabilities');
  if (!caps.includes(HOST_UUID)) {
    throw new Error(`${MIG_USER}'s libvirtd does not have its own host UUID (${confDir}/libvirtd.conf)`);
  }
  return {
    uri,
    uid,
    gid,
    virsh,
    writableFile(name: string) {
      const dir = `/tmp/vmhostd-mig-${process.pid}`;
      mkdirSync(dir, { recursive: true });
      chownSync(dir, uid, gid);
      const path = `${dir}/${name}`;
      writeFileSync(path, '');
      chownSync(path, uid, gid);
      return path;
    },
  };
}

/** A TCP port free on loopback right now (for QEMU's migration stream). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}
