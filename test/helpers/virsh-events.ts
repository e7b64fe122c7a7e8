// `virsh event --loop` as a child process: the canary's independent view of
// libvirt domain events.

import { type ChildProcess, spawn } from 'node:child_process';
import { LIBVIRT_URI } from './guest.js';

export interface VirshEventWatch {
  /** Every event line printed so far. */
  readonly lines: readonly string[];
  /** Resolves with the first line (seen so far or later) matching re; rejects after timeoutMs. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Watches all events of one domain. */
export function watchDomainEvents(domain: string): VirshEventWatch {
  const lines: string[] = [];
  const listeners = new Set<() => void>();
  let stderr = '';
  let exited = false;
  const child: ChildProcess = spawn(
    'virsh',
    ['-c', LIBVIRT_URI, 'event', '--domain', domain, '--loop', '--all', '--timestamp'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let partial = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter((l) => l.trim() !== ''));
    for (const l of [...listeners]) l();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const closed = new Promise<void>((resolve) => {
    child.on('close', () => {
      exited = true;
      for (const l of [...listeners]) l();
      resolve();
    });
  });

  return {
    lines,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        let from = 0;
        const check = (): void => {
          for (; from < lines.length; from++) {
            const line = lines[from] ?? '';
            if (re.test(line)) {
              finish();
              resolve(line);
              return;
            }
          }
          if (exited) {
            finish();
            reject(new Error(`virsh event for ${domain} exited before ${re} (stderr: ${stderr.trim()})`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(
            new Error(
              `no libvirt event matching ${re} for ${domain} within ${timeoutMs} ms; events seen:\n` +
                (lines.join('\n') || '(none)'),
            ),
          );
        }, timeoutMs);
        const finish = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop() {
      if (!exited) child.kill('SIGTERM');
      await closed;
    },
  };
}
