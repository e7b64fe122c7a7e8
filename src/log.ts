// The daemon's logger: pino JSON lines to stdout (journald picks them up);
// pretty output for people only when asked, since it costs a worker thread.
import { type Logger, pino } from 'pino';

export function createLogger(opts: { level: string; pretty: boolean; name?: string }): Logger {
  const base = { level: opts.level, name: opts.name ?? 'vmhostd' };
  if (!opts.pretty) return pino(base);
  return pino({
    ...base,
    transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:standard' } },
  });
}
