// GET /metrics: as a route on the daemon's listener (same TLS and client
// certificate rules as the API), and on an optional plain-HTTP loopback
// listener (metrics.listen) for a scraper on the same host.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { HttpRoute } from '../rpc/http-route.js';
import { isLoopbackHost } from '../rpc/listen-policy.js';

export const METRICS_PATH = '/metrics';

export interface Exposition {
  readonly contentType: string;
  render(): Promise<string>;
}

export function metricsRoute(source: Exposition, log: Logger): HttpRoute {
  return {
    prefix: METRICS_PATH,
    handle: (req, res, path) => serveMetrics(source, log, req, res, path),
  };
}

async function serveMetrics(
  source: Exposition,
  log: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): Promise<void> {
  if (path !== METRICS_PATH) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('use GET\n');
    return;
  }
  let body: string;
  try {
    body = await source.render();
  } catch (err) {
    log.error({ err }, 'metrics: collecting failed');
    res.writeHead(500, { 'Content-Type': 'text/plain' }).end('collecting metrics failed\n');
    return;
  }
  res.writeHead(200, {
    'Content-Type': source.contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

export interface MetricsListener {
  /** http://HOST:PORT/metrics */
  url(): string;
  close(): Promise<void>;
}

/** Plain HTTP, so loopback only: anything else is refused here as well as by the config. */
export async function startMetricsListener(
  host: string,
  port: number,
  source: Exposition,
  log: Logger,
): Promise<MetricsListener> {
  if (!isLoopbackHost(host)) {
    throw new Error(`metrics.listen: ${host} is not a loopback address (this listener has no TLS)`);
  }
  const server: Server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, (req, res) => {
    res.on('error', () => {});
    const q = (req.url ?? '').indexOf('?');
    const path = (q === -1 ? req.url : req.url?.slice(0, q)) ?? '';
    void serveMetrics(source, log, req, res, path);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`metrics.listen: cannot listen on ${host}:${port}: ${err.message}`));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const url = `http://${h}:${a.port}${METRICS_PATH}`;
  log.info({ url }, 'metrics listener (plain HTTP, loopback)');
  return {
    url: () => url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
