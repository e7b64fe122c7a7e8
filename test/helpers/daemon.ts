// Starts the real daemon as a child process (so tests can SIGKILL and restart
// it) and learns its URL from the "ready" log line.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const entry = fileURLToPath(new URL('./daemon-main.ts', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

export interface DaemonOptions {
  args?: string[];
  libvirtSocket?: string;
  /**
   * Manage only domains with this name prefix. Tests on the shared libvirtd
   * must set it, or their daemon would do bookkeeping on other tests' VMs.
   */
  domainPrefix?: string;
  unplugTimeoutS?: number;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** Serve the web console (from the config's default, <package root>/web); off by default. */
  console?: boolean;
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  url = '';
  private waiters = new Set<() => void>();
  private exited: Promise<number | null>;

  constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.stderr.push(line);
        }
        nl = buf.indexOf('\n');
      }
      for (const w of this.waiters) w();
    });
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      this.stderr.push(chunk);
      for (const w of this.waiters) w();
    });
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
    this.exited.then(() => {
      for (const w of this.waiters) w();
    });
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.logs.find(pred);
        if (found) {
          done();
          resolve(found);
        } else if (!this.running) {
          done();
          reject(
            new Error(`daemon exited (${this.proc.exitCode}); stderr: ${this.stderr.join('').slice(-2000)}`),
          );
        }
      };
      const t = setTimeout(() => {
        done();
        reject(
          new Error(
            `no matching log line within ${timeoutMs} ms; last: ${JSON.stringify(this.logs.slice(-5))}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** SIGTERM and wait for exit; returns the exit code. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (!this.running) return this.proc.exitCode;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  waitExit(): Promise<number | null> {
    return this.exited;
  }
}

/** Spawns the daemon and resolves once it logged "ready". */
export async function startDaemon(opts: DaemonOptions = {}): Promise<DaemonProcess> {
  const args = ['--import', 'tsx', entry, '--listen', '127.0.0.1:0', '--log-level', 'debug'];
  if (!opts.console) args.push('--no-console');
  if (opts.libvirtSocket) args.push('--libvirt-socket', opts.libvirtSocket);
  if (opts.domainPrefix) args.push('--domain-prefix', opts.domainPrefix);
  if (opts.unplugTimeoutS !== undefined) args.push('--unplug-timeout', String(opts.unplugTimeoutS));
  args.push(...(opts.args ?? []));
  const proc = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const d = new DaemonProcess(proc);
  try {
    const ready = await d.waitForLog((l) => l.msg === 'ready', opts.readyTimeoutMs ?? 60_000);
    d.url = String(ready.url);
  } catch (err) {
    await d.kill();
    throw err;
  }
  return d;
}

/** Runs the daemon's CLI once (e.g. for flag errors) and returns its exit code and output. */
export function runDaemonOnce(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: root });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (c) => {
      stdout += c;
    });
    proc.stderr.on('data', (c) => {
      stderr += c;
    });
    proc.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
