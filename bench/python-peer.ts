// A python3-libvirt script of bench/ as a child process (the benches' floor:
// libvirt's own C client): one JSON request line in, one JSON answer line
// out, in order. The script answers {"ready": true} once connected, and
// {"ms": n} or {"error": "..."} per request, timed inside python.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LIBVIRT_URI } from '../test/helpers/guest.js';
import { withDeadline } from './lib.js';

const PYTHON = '/usr/bin/python3'; // Debian's, which has python3-libvirt
const here = dirname(fileURLToPath(import.meta.url));

export class PythonPeer {
  private readonly waiting: { resolve: (line: string) => void; reject: (err: Error) => void }[] = [];
  private stderr = '';
  private exited = false;

  private constructor(
    private readonly script: string,
    private readonly child: ChildProcessWithoutNullStreams,
  ) {
    createInterface({ input: child.stdout }).on('line', (l) => this.waiting.shift()?.resolve(l));
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      this.stderr += c;
    });
    child.once('exit', () => {
      this.exited = true;
      for (const w of this.waiting.splice(0)) w.reject(this.exitError());
    });
  }

  /** Starts bench/<script> against the test libvirtd and waits for its ready line. */
  static async start(script: string): Promise<PythonPeer> {
    const p = new PythonPeer(script, spawn(PYTHON, [join(here, script), LIBVIRT_URI]));
    await withDeadline(`${script} start`, 30_000, () => p.answer());
    return p;
  }

  /** Sends one request; resolves with the time python measured (ms), rejects with its error. */
  async timed(request: Record<string, unknown>, what: string): Promise<number> {
    const answered = this.answer();
    this.child.stdin.write(`${JSON.stringify(request)}\n`);
    const a = await answered;
    if (typeof a.ms !== 'number') throw new Error(`python3-libvirt ${what} failed: ${String(a.error)}`);
    return a.ms;
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin.end();
    this.child.kill('SIGTERM');
    await gone;
  }

  private exitError(): Error {
    return new Error(`${this.script} exited: ${this.stderr.trim()}`);
  }

  private answer(): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(this.exitError());
    return new Promise<string>((resolve, reject) => this.waiting.push({ resolve, reject })).then(
      (l) => JSON.parse(l) as Record<string, unknown>,
    );
  }
}
