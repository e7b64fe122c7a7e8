// The daemon's logger: pino JSON lines to stdout (journald picks them up);
// pretty output for people only when asked, since it costs a worker thread.
// Lines are written asynchronously: a synchronous write per line was the
// largest single cost of an unplug under load (see bench/README.md). Callers
// flush before exiting.
import { type Logger, pino } from 'pino';

export function createLogger(opts: { level: string; pretty: boolean; name?: string }): Logger {
  const base = { level: opts.level, name: opts.name ?? 'vmhostd' };
  if (!opts.pretty) return pino(base, pino.destination({ dest: 1, sync: false }));
  return pino({
    ...base,
    transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:standard' } },
  });
}

/** Resolves once buffered lines are written (bounded: a stuck stdout must not block exit). */
export function flushLogger(log: Logger, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, timeoutMs);
    log.flush(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
