// Stops and starts the host's libvirtd for tests of reconnection. Guests
// (QEMU processes) survive it, as on a real host.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { waitFor } from './wait.js';

const run = promisify(execFile);

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
  await waitFor('libvirtd to exit', async () => libvirtdPids().length === 0, 30_000, 100);
}

export async function startLibvirtd(): Promise<void> {
  if (libvirtdPids().length === 0) await run('libvirtd', ['-d']);
  await waitFor('libvirtd to answer', answers, 60_000, 200);
}

export async function restartLibvirtd(): Promise<void> {
  await stopLibvirtd();
  await startLibvirtd();
}
