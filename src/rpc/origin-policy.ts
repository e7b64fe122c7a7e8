// Which browser origins and Host names may reach the API, the REST adapter
// and the console. A web page anywhere can make a browser open a WebSocket or
// send a request to this port (the README's `ssh -L` workflow puts a browser
// right next to it), and DNS rebinding makes a hostile name resolve to
// 127.0.0.1; so requests carrying an Origin must come from the console itself
// or a configured origin, and on a loopback listener (or with an Origin) the
// Host header must name this daemon. An engine's request without Origin,
// over mutual TLS off loopback, is never refused for its Host.
import { hostname, networkInterfaces } from 'node:os';
import { isLoopbackHost } from './listen-policy.js';

export interface OriginPolicyOptions {
  /** The listen address (0.0.0.0 / :: stand for every address of the machine). */
  listenHost: string;
  tls: boolean;
  /** Extra origins (scheme://host[:port]) allowed to call, e.g. an engine's UI. */
  allowedOrigins?: readonly string[];
  /** Extra names a Host header may carry, e.g. a DNS alias of this host. */
  allowedHosts?: readonly string[];
}

function bare(host: string): string {
  const h = host.toLowerCase();
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/** The name part of a Host header value ("name", "name:port", "[v6]:port"), or null if malformed. */
export function hostHeaderName(value: string): string | null {
  const m =
    /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(value) ?? /^([^:[\]\s/@]+)(?::(\d{1,5}))?$/.exec(value);
  return m?.[1] ? m[1].toLowerCase().replace(/\.$/, '') : null;
}

export class OriginPolicy {
  private readonly loopbackListener: boolean;
  private readonly scheme: string;
  private readonly origins: Set<string>;
  private readonly names = new Set<string>();

  constructor(opts: OriginPolicyOptions) {
    const listen = bare(opts.listenHost);
    this.loopbackListener = isLoopbackHost(listen);
    this.scheme = opts.tls ? 'https:' : 'http:';
    this.origins = new Set(opts.allowedOrigins ?? []);
    for (const n of opts.allowedHosts ?? []) this.names.add(bare(n));
    const wildcard = listen === '0.0.0.0' || listen === '::' || listen === '';
    if (!wildcard) this.names.add(listen);
    const own = hostname().toLowerCase();
    if (own !== '') {
      this.names.add(own);
      this.names.add(own.split('.')[0] ?? own);
    }
    if (wildcard) {
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) this.names.add(a.address.toLowerCase().replace(/%.*$/, ''));
      }
    }
  }

  private hostAccepted(name: string): boolean {
    return isLoopbackHost(name) || this.names.has(name);
  }

  /** Why a request with these headers is refused (403), or null when it may proceed. */
  refusal(headers: { origin?: string | undefined; host?: string | undefined }): string | null {
    const origin = headers.origin;
    if (origin === undefined && !this.loopbackListener) return null;
    const host = headers.host;
    if (host === undefined || host === '') return 'no Host header';
    const name = hostHeaderName(host);
    if (name === null || !this.hostAccepted(name)) return 'Host does not name this daemon';
    if (origin === undefined) return null;
    if (this.origins.has(origin)) return null;
    // The console's own origin: the page was loaded from this listener under
    // the same scheme and the same host:port the browser sends as Host (which
    // may differ from the listen port behind `ssh -L`).
    let u: URL;
    try {
      u = new URL(origin);
    } catch {
      return 'Origin is not allowed';
    }
    let hostAsUrl: string;
    try {
      hostAsUrl = new URL(`${this.scheme}//${host}`).host;
    } catch {
      return 'Host does not name this daemon';
    }
    if (u.protocol === this.scheme && u.host === hostAsUrl && u.origin === origin) return null;
    return 'Origin is not allowed';
  }
}
