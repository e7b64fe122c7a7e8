// The web console's static files: index, content types, traversal and
// symlink refusal, methods.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RpcServer } from '../../src/rpc/server.js';
import { CONTENT_SECURITY_POLICY } from '../../src/rpc/static-files.js';
import { LogCapture, startServer } from './rpc/helpers.js';

interface HttpReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(
  port: number,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = { 'Content-Type': 'application/xml' },
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        }),
      );
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('web console static files', () => {
  const logs = new LogCapture();
  let server: RpcServer;
  let port: number;
  let base: string;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'vmhostd-static-'));
    const dir = join(base, 'web');
    mkdirSync(join(dir, 'css'), { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<!doctype html><title>VM Devices</title>');
    writeFileSync(join(dir, 'app.js'), 'console.log(1);');
    writeFileSync(join(dir, 'css', 'style.css'), 'body{}');
    writeFileSync(join(dir, '.secret'), 'nope');
    writeFileSync(join(base, 'outside.txt'), 'outside');
    symlinkSync(join(base, 'outside.txt'), join(dir, 'link.txt'));
    server = await startServer({ logger: logs.logger, staticDir: dir });
    port = server.address().port;
  });
  afterAll(async () => {
    await server.close({ drainMs: 100 });
    rmSync(base, { recursive: true, force: true });
  });

  it('GET / serves index.html with a strict CSP', async () => {
    const r = await http(port, 'GET', '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.body).toContain('VM Devices');
    expect(r.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    expect(CONTENT_SECURITY_POLICY).toMatch(/default-src 'self'; connect-src 'self';/);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
  });

  it('serves files by path, also under /static/, with their content types', async () => {
    const js = await http(port, 'GET', '/static/app.js');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.body).toBe('console.log(1);');
    const css = await http(port, 'GET', '/css/style.css');
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    const head = await http(port, 'HEAD', '/app.js');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
  });

  it.each([
    '/../outside.txt',
    '/static/../../outside.txt',
    '/%2e%2e/outside.txt',
    '/static/%2e%2e%2f%2e%2e%2foutside.txt',
    '/..%5coutside.txt',
    '/link.txt',
    '/.secret',
    '/app.js%00.html',
    '/nope.html',
    '/css',
    '/index.html/',
    '/app.js/',
    '/static/',
  ])('refuses %s with 404', async (path) => {
    const r = await http(port, 'GET', path);
    expect(r.status).toBe(404);
    expect(r.body).not.toContain('outside');
  });

  it('only GET and HEAD', async () => {
    expect((await http(port, 'POST', '/index.html', 'x')).status).toBe(405);
  });
});
