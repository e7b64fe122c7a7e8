// A plain HTTP front that the API registers on the listener (e.g. the REST
// request of the feature page). The transport only routes by path prefix and
// lends the route its dispatcher, so whatever the route calls goes through the
// same validation, limits, error mapping and logging as JSON-RPC.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Dispatcher } from './dispatcher.js';

export interface HttpRouteContext {
  dispatcher: Dispatcher;
  log: Logger;
  /** Request body cap (RpcLimits.maxBodyBytes). */
  maxBodyBytes: number;
  /** True once the server is shutting down: answer 503. */
  isClosing(): boolean;
}

export interface HttpRoute {
  /** e.g. '/api': matches '/api' and every path under '/api/'. */
  prefix: string;
  handle(req: IncomingMessage, res: ServerResponse, path: string, ctx: HttpRouteContext): Promise<void>;
}

/** Default request body cap of HTTP routes. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

export function routeMatches(route: HttpRoute, path: string): boolean {
  return path === route.prefix || path.startsWith(`${route.prefix}/`);
}
