// contrib/grafana/vmhostd-dashboard.json against what the daemon exports:
// every query parses as PromQL (the Prometheus project's own grammar,
// @prometheus-io/lezer-promql), names only series a scrape of the daemon
// shows (with metrics.per_vm on, every metric driven once), and filters or
// groups only by labels those series carry. So a renamed metric or label
// breaks this test, not an operator's dashboard.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { describe, expect, it } from 'vitest';
import { everyMetricOnce } from '../helpers/metrics-driven.js';

const DASHBOARD = resolve(import.meta.dirname, '../../contrib/grafana/vmhostd-dashboard.json');

interface Target {
  expr?: string;
}
interface Panel {
  title?: string;
  type: string;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; query?: string | { query: string } }[] };
}

/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['instance', 'job']);

/** Grafana's variables replaced by values PromQL accepts. */
function substitute(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?\w+\}?/g, 'x');
}

interface Selector {
  metric: string;
  labels: string[];
}

/** The metric and matcher labels of every vector selector, and the labels of every by/without. */
function analyse(expr: string): { errors: number[]; selectors: Selector[]; grouping: string[] } {
  const tree = parser.parse(expr);
  const errors: number[] = [];
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) errors.push(n.from);
      if (n.name === 'VectorSelector') {
        const node = n.node;
        const id = node.getChild('Identifier');
        const labels: string[] = [];
        let metric = id ? expr.slice(id.from, id.to) : '';
        const matchers = node.getChild('LabelMatchers');
        for (let m = matchers?.firstChild; m; m = m.nextSibling) {
          const name = m.getChild('LabelName');
          if (!name) continue;
          const label = expr.slice(name.from, name.to);
          const value = m.getChild('StringLiteral');
          if (label === '__name__' && value) metric = expr.slice(value.from + 1, value.to - 1);
          else labels.push(label);
        }
        selectors.push({ metric, labels });
      }
      if (n.name === 'GroupingLabels') {
        for (let l = n.node.firstChild; l; l = l.nextSibling) {
          if (l.name === 'LabelName') grouping.push(expr.slice(l.from, l.to));
        }
      }
    },
  });
  return { errors, selectors, grouping };
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

describe('Grafana dashboard', () => {
  const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const panels = allPanels(dash.panels).filter((p) => p.type !== 'row');
  const exprs = panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title ?? '?', expr: t.expr ?? '' })),
  );

  it('has panels, each with a query', () => {
    expect(panels.length).toBeGreaterThanOrEqual(10);
    for (const p of panels) expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
  });

  it('every query parses as PromQL and names only exported series, filtered and grouped by their labels', async () => {
    const scrape = await everyMetricOnce();
    const used = new Set<string>();
    for (const { panel, expr } of exprs) {
      const a = analyse(substitute(expr));
      expect(a.errors, `${panel}: ${expr} does not parse`).toEqual([]);
      expect(a.selectors.length, `${panel}: ${expr} selects nothing`).toBeGreaterThan(0);
      const labelsOfQuery = new Set<string>(TARGET_LABELS);
      for (const s of a.selectors) {
        const labels = scrape.selectable.get(s.metric);
        expect(labels, `${panel}: ${s.metric} is not exported`).toBeDefined();
        for (const l of s.labels) {
          expect(TARGET_LABELS.has(l) || labels?.has(l), `${panel}: ${s.metric} has no label ${l}`).toBe(
            true,
          );
        }
        for (const l of labels ?? []) labelsOfQuery.add(l);
        used.add(s.metric);
      }
      for (const g of a.grouping)
        expect(labelsOfQuery.has(g), `${panel}: groups by unknown label ${g}`).toBe(true);
    }
    // What the dashboard is for (issue 15): unplug latency percentiles, outcomes, rejections by VM, libvirt reconnects.
    for (const m of [
      'vmhostd_unplug_duration_seconds_bucket',
      'vmhostd_unplug_duration_seconds_count',
      'vmhostd_vm_unplug_rejections_total',
      'vmhostd_libvirt_reconnects_total',
    ]) {
      expect(used.has(m), m).toBe(true);
    }
    expect(
      exprs.some((e) => /histogram_quantile\(0\.95,.*vmhostd_unplug_duration_seconds_bucket/.test(e.expr)),
    ).toBe(true);
  });

  it('the host variable draws its values from an exported metric', async () => {
    const scrape = await everyMetricOnce();
    const v = dash.templating.list.find((t) => t.name === 'instance');
    const q = typeof v?.query === 'string' ? v.query : (v?.query?.query ?? '');
    const m = /^label_values\((\w+),\s*instance\)$/.exec(q);
    expect(m?.[1] && scrape.selectable.has(m[1])).toBe(true);
  });

  it('the checker itself catches a wrong metric, a wrong label and a parse error', async () => {
    const scrape = await everyMetricOnce();
    const wrongMetric = analyse('rate(vmhostd_unplug_seconds_count[5m])').selectors[0]!;
    expect(scrape.selectable.has(wrongMetric.metric)).toBe(false);
    const wrongLabel = analyse('vmhostd_dimms{status="x"}').selectors[0]!;
    expect(scrape.selectable.get(wrongLabel.metric)?.has(wrongLabel.labels[0]!)).toBe(false);
    expect(analyse('sum(rate(vmhostd_dimms[5m])').errors.length).toBeGreaterThan(0);
    expect(analyse('{__name__="vmhostd_vms"}').selectors[0]?.metric).toBe('vmhostd_vms');
  });
});
