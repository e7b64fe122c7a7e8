// The real daemon (child process) against our fake libvirtd: starts both,
// writes an optional TOML config, and offers waits with deadlines.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeLibvirtd } from '../fakes/fake-libvirtd.js';
import { type DaemonProcess, startDaemon } from './daemon.js';

export interface FakeDaemonOptions {
  /** TOML text passed with --config. */
  config?: string;
  args?: string[];
  unplugTimeoutS?: number;
  logLevel?: string;
  env?: Record<string, string>;
}

export interface FakeDaemon {
  fake: FakeLibvirtd;
  daemon: DaemonProcess;
  stop(): Promise<void>;
}

/** Starts the daemon on an already running fake (so tests can add domains first). */
export async function startOnFake(fake: FakeLibvirtd, o: FakeDaemonOptions = {}): Promise<FakeDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'vmhostd-fake-'));
  const args: string[] = [];
  if (o.config !== undefined) {
    const path = join(dir, 'vmhostd.toml');
    writeFileSync(path, o.config);
    args.push('--config', path);
  }
  if (o.logLevel) args.push('--log-level', o.logLevel);
  args.push(...(o.args ?? []));
  let daemon: DaemonProcess;
  try {
    daemon = await startDaemon({
      libvirtSocket: fake.socketPath,
      unplugTimeoutS: o.unplugTimeoutS,
      args,
      env: o.env,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    fake,
    daemon,
    async stop() {
      await daemon.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export { waitFor } from './wait.js';

/** Resident set size of a process in KiB (VmRSS from /proc). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

export { FakeLibvirtd };
