// The STOMP front of the listener: takes the sockets the protocol sniffer
// recognised as STOMP, runs one StompSession each through the same dispatcher
// as the WebSocket, and is an event sink delivering numbered notifications to
// subscribers of the events destination.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Dispatcher } from './dispatcher.js';
import type { EventJournal, EventSink, JournalEntry } from './event-journal.js';
import { encodeFrame } from './stomp-frame.js';
import { type StompLimits, StompSession } from './stomp-session.js';

export interface StompServerOptions {
  dispatcher: Dispatcher;
  journal: EventJournal;
  log: Logger;
  serverName: string;
  limits: StompLimits;
  /** Connections open on every transport of the listener, for the shared cap. */
  connectionCount(): number;
  maxConnections: number;
  isClosing(): boolean;
  nextConnectionId(): string;
  /** A connection refused before it became a client (for the metrics observer). */
  onRefused?(reason: 'limits' | 'timeout'): void;
}

export class StompServer implements EventSink {
  private readonly sessions = new Set<StompSession>();
  private noSessionWaiters: (() => void)[] = [];

  constructor(private readonly opts: StompServerOptions) {}

  get size(): number {
    return this.sessions.size;
  }

  accept(socket: Socket, head: Buffer): void {
    const refuse = this.opts.isClosing()
      ? 'server shutting down'
      : this.opts.connectionCount() >= this.opts.maxConnections
        ? 'too many connections'
        : null;
    if (refuse !== null) {
      this.opts.log.warn(
        { remote: socket.remoteAddress, max: this.opts.maxConnections },
        `stomp refused: ${refuse}`,
      );
      if (refuse === 'too many connections') this.opts.onRefused?.('limits');
      socket.on('error', () => {});
      socket.end(encodeFrame('ERROR', [['message', refuse]], `${refuse}\n`));
      return;
    }
    const id = this.opts.nextConnectionId();
    const session = new StompSession(
      id,
      socket,
      {
        dispatcher: this.opts.dispatcher,
        log: this.opts.log,
        serverName: this.opts.serverName,
        replayFor: (r) => this.opts.journal.replayFor(r),
        onConnectTimeout: () => this.opts.onRefused?.('timeout'),
        onClose: (s) => {
          this.sessions.delete(s);
          if (this.sessions.size === 0) for (const w of this.noSessionWaiters.splice(0)) w();
        },
      },
      this.opts.limits,
    );
    this.sessions.add(session);
    session.start(head);
  }

  listeners(): number {
    let n = 0;
    for (const s of this.sessions) if (s.subscribedToEvents) n++;
    return n;
  }

  deliver(entry: JournalEntry): void {
    for (const s of this.sessions) s.deliverEvent(entry);
  }

  /** ERROR "server shutting down" to each client, then wait (bounded) for them to go. */
  async close(graceMs = 1000): Promise<void> {
    for (const s of this.sessions) s.shutdown();
    if (this.sessions.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => {
        timer = setTimeout(r, graceMs);
      }),
      new Promise<void>((r) => this.noSessionWaiters.push(r)),
    ]);
    clearTimeout(timer);
    for (const s of this.sessions) s.destroy();
  }
}
