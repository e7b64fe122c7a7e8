// Stops and starts the host's libvirtd for tests of reconnection. Guests
// (QEMU processes) survive it, as on a real host.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { waitFor } from './wait.js';

const run = promisify(execFile);
const SUPERVISOR = fileURLToPath(new URL('../host/libvirtd-supervised.sh', import.meta.url));
const SUPERVISOR_PIDFILE = '/run/vmhostd-libvirtd-supervisor.pid';
const SUPERVISOR_LOG = '/var/log/libvirt/vmhostd-libvirtd-supervisor.log';
const CRASH_LOG = '/var/log/libvirt/vmhostd-libvirtd-crashes.log';

function libvirtdPids(): number[] {
  const r = spawnSync('pgrep', ['-x', 'libvirtd'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((s) => Number(s));
}

async function answers(): Promise<boolean> {
  try {
    await run('virsh', ['-c', 'qemu:///system', 'version'], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export async function stopLibvirtd(): Promise<void> {
  for (const pid of libvirtdPids()) process.kill(pid, 'SIGTERM');
  // A clean exit ends the supervisor too; startLibvirtd starts a new one.
  await waitFor(
    'libvirtd and its supervisor to exit',
    async () => libvirtdPids().length === 0 && supervisorPid() === undefined,
    30_000,
    100,
  );
}

/** The supervisor's pid while one runs (it restarts a crashed libvirtd: test/host/libvirtd-supervised.sh). */
function supervisorPid(): number | undefined {
  try {
    const pid = Number(readFileSync(SUPERVISOR_PIDFILE, 'utf8').trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

export async function startLibvirtd(): Promise<void> {
  if (libvirtdPids().length === 0 && supervisorPid() === undefined) {
    // As setup-host.sh starts it: detached, restarted if it crashes.
    const out = openSync(SUPERVISOR_LOG, 'a');
    spawn('bash', [SUPERVISOR], { detached: true, stdio: ['ignore', out, out] }).unref();
    closeSync(out);
  }
  await waitFor('libvirtd to answer', answers, 60_000, 200);
}

/**
 * Kills libvirtd as its segfaults do (SIGSEGV) and waits for the supervisor to
 * bring up a new one that answers. The crash log says it was on purpose.
 */
export async function crashLibvirtd(why: string): Promise<void> {
  if (supervisorPid() === undefined) {
    throw new Error('libvirtd is not supervised here; start it with: bash test/host/setup-host.sh');
  }
  const [old, ...more] = libvirtdPids();
  if (old === undefined || more.length > 0)
    throw new Error(`expected one libvirtd, found ${libvirtdPids().length}`);
  appendFileSync(
    CRASH_LOG,
    `${new Date().toISOString()} a test kills libvirtd ${old} with SIGSEGV on purpose: ${why}\n`,
  );
  process.kill(old, 'SIGSEGV');
  await waitFor(
    'a restarted libvirtd to answer',
    async () => {
      const now = libvirtdPids();
      return now.length === 1 && now[0] !== old && (await answers());
    },
    60_000,
    200,
  );
}

export async function restartLibvirtd(): Promise<void> {
  await stopLibvirtd();
  await startLibvirtd();
}
