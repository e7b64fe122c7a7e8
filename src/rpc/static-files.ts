// The web console's files: GET / is index.html, other paths (optionally under
// /static/) map to files inside the console directory. Paths are decoded and
// resolved, then checked (also after following symlinks) to stay inside it.
// connect-src 'self' lets the console open its WebSocket to this daemon only
// (CSP 3 matches ws:/wss: of the page's own host for 'self').
import { createReadStream, realpathSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, resolve, sep } from 'node:path';
import type { Logger } from 'pino';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "connect-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

export function contentTypeFor(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

function securityHeaders(res: ServerResponse): void {
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Cache-Control', 'no-cache');
}

function plain(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  securityHeaders(res);
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...extra });
  res.end(`${text}\n`);
}

/** The file a URL path names inside `root`, or null if it would leave it. */
export function resolveInside(root: string, urlPath: string): string | null {
  let rel = urlPath === '/' || urlPath === '' ? '/index.html' : urlPath;
  // A file is never a directory: /index.html/ would otherwise resolve to it.
  if (rel.endsWith('/')) return null;
  if (rel.startsWith('/static/')) rel = rel.slice('/static'.length);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  // Dotfiles (.git, .env) are never part of the console.
  if (decoded.split('/').some((seg) => seg.startsWith('.'))) return null;
  const full = resolve(root, `.${decoded}`);
  return full.startsWith(root + sep) ? full : null;
}

export class StaticFiles {
  private readonly root: string;

  constructor(
    dir: string,
    private readonly log: Logger,
  ) {
    let root = resolve(dir);
    try {
      root = realpathSync(root);
    } catch {
      log.warn({ dir: root }, 'web console directory does not exist; its files will be 404');
    }
    this.root = root;
  }

  async serve(req: IncomingMessage, res: ServerResponse, urlPath: string): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      plain(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
      return;
    }
    const file = resolveInside(this.root, urlPath);
    if (file === null) {
      this.log.info({ path: urlPath.slice(0, 200) }, 'static path refused');
      plain(res, 404, 'not found');
      return;
    }
    let size: number;
    try {
      const real = await realpath(file);
      if (!real.startsWith(this.root + sep)) throw new Error('outside root');
      const st = await stat(real);
      if (!st.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      plain(res, 404, 'not found');
      return;
    }
    securityHeaders(res);
    res.writeHead(200, { 'Content-Type': contentTypeFor(file), 'Content-Length': size });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const stream = createReadStream(file);
    stream.on('error', (err) => {
      this.log.warn({ err, file }, 'static file read failed');
      res.destroy();
    });
    stream.pipe(res);
  }
}
