// scripts/demo.sh runs to completion non-interactively (as in CI) and its
// output shows the DIMM plugged and then gone. Uses its own port, VM name and
// state directory, and removes the daemon and VM afterwards.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const state = mkdtempSync(join(tmpdir(), 'vmhostd-demo-'));
const vm = `vmhostd-demo-ci-${process.pid}`;
const port = String(20000 + (process.pid % 20000));
const run = promisify(execFile);

function runDemo(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('bash', [join(root, 'scripts/demo.sh')], {
      cwd: root,
      env: {
        ...process.env,
        CI: 'true',
        VMHOSTD_DEMO_PORT: port,
        VMHOSTD_DEMO_VM: vm,
        VMHOSTD_DEMO_STATE: state,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (c) => {
      out += c;
    });
    p.stderr.on('data', (c) => {
      out += c;
    });
    p.once('close', (code) => resolve({ code, out }));
  });
}

afterAll(async () => {
  try {
    process.kill(Number(readFileSync(join(state, 'vmhostd.pid'), 'utf8')), 'SIGTERM');
  } catch {
    // not started
  }
  await run('virsh', ['-c', 'qemu:///system', 'destroy', vm]).catch(() => undefined);
  await run('virsh', ['-c', 'qemu:///system', 'undefine', vm]).catch(() => undefined);
  rmSync(state, { recursive: true, force: true });
});

describe('scripts/demo.sh', () => {
  it('runs to completion non-interactively and shows a hot plug and a hot unplug', async () => {
    const r = await runDemo();
    expect(r.code, r.out.slice(-3000)).toBe(0);
    const alias = /Plugged DIMM (ua-demo-\d+) \(256 MiB/.exec(r.out)?.[1];
    expect(alias, r.out).toBeDefined();
    expect(r.out).toMatch(new RegExp(`Removed DIMM ${alias} \\(256 MiB\\) from ${vm}`));
    // the last `vm show` lists no DIMM any more
    const lastShow = r.out.slice(r.out.lastIndexOf('$ vmhost-client vm show'));
    expect(lastShow).toContain('No memory devices (DIMMs).');
    expect(r.out).toContain(`DIMM ${alias} is gone.`);
    expect(r.out).toMatch(/vmhostd keeps running/);
  });

  it('a second run reuses the VM and restarts the daemon cleanly', async () => {
    const r = await runDemo();
    expect(r.code, r.out.slice(-3000)).toBe(0);
    expect(r.out).toContain(`reusing the existing domain ${vm}`);
    expect(r.out).toMatch(/stopping the previous demo daemon/);
    expect(r.out).toMatch(/is gone\./);
  });
});
