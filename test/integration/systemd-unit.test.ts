// The shipped unit passes `systemd-analyze verify` (as CI runs it), and the
// check really fails on a broken unit.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const unitPath = join(root, 'systemd', 'vmhostd.service');
const dir = mkdtempSync(join(tmpdir(), 'vmhostd-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function verify(unit?: string): Promise<{ code: number; out: string }> {
  try {
    const r = await run('bash', [join(root, 'systemd', 'verify.sh'), ...(unit ? [unit] : [])]);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

describe('systemd/vmhostd.service', () => {
  it('passes systemd-analyze verify', async () => {
    const r = await verify();
    expect(r.out).toContain('vmhostd.service OK');
    expect(r.code).toBe(0);
  });

  it('the check fails on an unknown directive', async () => {
    const broken = join(dir, 'vmhostd.service');
    writeFileSync(
      broken,
      readFileSync(unitPath, 'utf8').replace('[Service]', '[Service]\nNoSuchDirective=yes'),
    );
    const r = await verify(broken);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/NoSuchDirective/);
  });

  it('is hardened and restarts on failure', () => {
    const unit = readFileSync(unitPath, 'utf8');
    for (const line of [
      'Restart=on-failure',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ReadWritePaths=-/run/libvirt',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'ProtectKernelTunables=yes',
      'ProtectKernelModules=yes',
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
      'ExecStart=/usr/bin/node /opt/vmhostd/bin/vmhostd.js --config /etc/vmhostd/vmhostd.toml',
      // Readiness (tested under a real systemd in systemd-nspawn.test.ts).
      'Type=exec',
      'ExecStartPost=/usr/bin/node /opt/vmhostd/systemd/wait-ready.mjs --config /etc/vmhostd/vmhostd.toml',
      'RestartPreventExitStatus=2',
    ]) {
      expect(unit).toContain(line);
    }
    expect(unit).toMatch(/^After=.*libvirtd\.service/m);
    expect(unit).toMatch(/^Wants=.*libvirtd\.service/m);
  });
});
