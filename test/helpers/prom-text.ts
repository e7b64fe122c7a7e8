// Reads the daemon's /metrics through independent Prometheus text parsers
// from npm, never through prom-client. The whole text must pass
// parse-prometheus-text-format (the format's syntax, NaN included, as
// process defaults may show). Values come from prom2javascript, which keeps
// labelled histograms apart (the former merges them into one) and checks
// each histogram's count against its +Inf bucket, but knows no NaN: it reads
// our own vmhostd_ families.
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { getMetricsFromStream, type PromHistogramData, type PromMetric } from 'prom2javascript';

type Labels = Record<string, string>;

const matches = (have: Labels, want: Labels) => Object.entries(want).every(([k, v]) => have[k] === v);

export class Scrape {
  private constructor(
    readonly text: string,
    names: ReadonlySet<string>,
    /** The vmhostd_ families. */
    readonly families: Map<string, PromMetric>,
  ) {
    this.names = names;
  }

  /** Every family name in the text, through the first parser. */
  readonly names: ReadonlySet<string>;
  /**
   * Every sample name a query can select (a histogram's _bucket, _sum and
   * _count), with the label names its series carry (le on buckets).
   */
  readonly selectable = new Map<string, Set<string>>();

  static async parse(text: string): Promise<Scrape> {
    const all = parsePrometheusTextFormat(text);
    const names = new Set(all.map((f) => f.name));
    const ours = text
      .split('\n')
      .filter((l) => /^(# (HELP|TYPE) )?vmhostd_/.test(l))
      .join('\n');
    const parsed = await getMetricsFromStream(Readable.from([ours]));
    const scrape = new Scrape(text, names, new Map(Object.entries(parsed)));
    for (const f of all) {
      const labels = new Set<string>();
      if (f.name.startsWith('vmhostd_'))
        for (const l of scrape.series(f.name)) for (const k in l) labels.add(k);
      else for (const m of f.metrics) for (const k in m.labels ?? {}) labels.add(k);
      if (f.type === 'HISTOGRAM' || f.type === 'SUMMARY') {
        scrape.selectable.set(`${f.name}_sum`, labels);
        scrape.selectable.set(`${f.name}_count`, labels);
      }
      if (f.type === 'HISTOGRAM') scrape.selectable.set(`${f.name}_bucket`, new Set([...labels, 'le']));
      else scrape.selectable.set(f.name, f.type === 'SUMMARY' ? new Set([...labels, 'quantile']) : labels);
    }
    return scrape;
  }

  family(name: string): PromMetric {
    const f = this.families.get(name);
    if (!f) throw new Error(`metric ${name} not in the scrape`);
    return f;
  }

  /** Label sets of a family's series. */
  series(name: string): Labels[] {
    return (this.families.get(name)?.data ?? []).map((d) => d.labels);
  }

  /** A counter's or gauge's value; 0 when the labelled series does not exist (yet). */
  value(name: string, labels: Labels = {}): number {
    const data = (this.families.get(name)?.data ?? []) as { labels: Labels; value?: number }[];
    return data.find((d) => matches(d.labels, labels))?.value ?? 0;
  }

  private histogram(name: string, labels: Labels): PromHistogramData | undefined {
    const f = this.families.get(name);
    if (f && f.type !== 'histogram') throw new Error(`${name} is a ${f.type}, not a histogram`);
    return (f?.data as PromHistogramData[] | undefined)?.find((d) => matches(d.labels, labels));
  }

  /** A histogram's observation count; 0 when the labelled series does not exist (yet). */
  count(name: string, labels: Labels = {}): number {
    return this.histogram(name, labels)?.count ?? 0;
  }

  /** A histogram's sum of observations; 0 when the labelled series does not exist (yet). */
  sum(name: string, labels: Labels = {}): number {
    return this.histogram(name, labels)?.sum ?? 0;
  }

  /** A histogram series' buckets (upper bound -> cumulative count). */
  buckets(name: string, labels: Labels = {}): Map<number, number> {
    const out = new Map<number, number>();
    for (const [le, n] of Object.entries(this.histogram(name, labels)?.buckets ?? {})) {
      out.set(le === '+Inf' ? Infinity : Number(le), n);
    }
    return out;
  }
}

/** GET url and parse it; fails on anything but 200 text/plain. */
export async function scrape(url: string, init: RequestInit = {}): Promise<Scrape> {
  const r = await fetch(url, init);
  if (r.status !== 200) throw new Error(`GET ${url}: HTTP ${r.status}`);
  const type = r.headers.get('content-type') ?? '';
  if (!type.startsWith('text/plain')) throw new Error(`GET ${url}: content-type ${type}`);
  return Scrape.parse(await r.text());
}

/** The /metrics URL on the daemon's main listener, from its ws[s]:// URL. */
export function metricsUrlOf(wsUrl: string): string {
  return wsUrl.replace(/^ws/, 'http').replace(/\/jsonrpc$/, '/metrics');
}

/** GET an https URL with Node's TLS (a client certificate when given); resolves with status and body. */
export function httpsGet(
  url: string,
  tls: { ca: Buffer; cert?: Buffer; key?: Buffer; servername?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest(url, { ...tls, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
