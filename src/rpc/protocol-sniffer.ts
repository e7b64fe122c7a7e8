// One port, two protocols, as VDSM's protocol detector does on 54321: the
// first bytes of a connection (after TLS, when TLS is on) say whether it is a
// STOMP frame or an HTTP request. HTTP connections go on to node's HTTP
// server untouched (the bytes read are put back); STOMP ones are handed over.
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { detectStomp } from './stomp-frame.js';

export interface SniffOptions {
  /** 'connection' for plain HTTP, 'secureConnection' for HTTPS (after the TLS handshake). */
  event: 'connection' | 'secureConnection';
  /** A client that sends no decisive bytes in this time is closed. */
  timeoutMs: number;
  onStomp(socket: Socket, head: Buffer): void;
  log: Logger;
}

/** Longest prefix we wait for: any STOMP command line fits in it. */
const MAX_SNIFF_BYTES = 32;

/**
 * Put a sniffer in front of `server`'s own connection handler. Call it right
 * after creating the server, before other 'connection' listeners are added.
 */
export function sniffProtocols(server: Server, opts: SniffOptions): void {
  const httpHandlers = server.listeners(opts.event) as ((socket: Socket) => void)[];
  server.removeAllListeners(opts.event);
  const toHttp = (socket: Socket) => {
    for (const h of httpHandlers) h.call(server, socket);
  };
  server.on(opts.event, (socket: Socket) => {
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      cleanup();
      opts.log.info(
        { remote: socket.remoteAddress, bytes: head.length },
        'handshake timeout: request head not received in time',
      );
      // As the HTTP server answers a slow request head.
      if (socket.writable) socket.end('HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    }, opts.timeoutMs);
    timer.unref();
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('close', onClose);
      socket.off('error', onError);
      socket.off('end', onEnd);
    };
    // Until a protocol owns the socket, its errors (a reset peer) are ours to swallow.
    const onError = () => {};
    const onClose = () => cleanup();
    // EOF before any decisive byte: nothing to serve.
    const onEnd = () => {
      cleanup();
      socket.destroy();
    };
    const onReadable = () => {
      for (;;) {
        const chunk = socket.read() as Buffer | null;
        if (chunk === null) return;
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
        const kind = detectStomp(head);
        if (kind === 'undecided' && head.length < MAX_SNIFF_BYTES) continue;
        cleanup();
        if (kind === 'stomp') {
          opts.onStomp(socket, head);
        } else {
          socket.unshift(head);
          toHttp(socket);
        }
        return;
      }
    };
    socket.on('readable', onReadable);
    socket.on('close', onClose);
    socket.on('error', onError);
    socket.on('end', onEnd);
  });
}
