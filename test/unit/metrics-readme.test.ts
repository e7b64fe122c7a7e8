// The README's metrics table against what the daemon exports: every
// vmhostd_ family listed with its type and labels, and nothing listed that
// is not exported.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { everyMetricOnce } from '../helpers/metrics-driven.js';

const README = resolve(import.meta.dirname, '../../README.md');

interface Row {
  type: string;
  labels: string[];
}

function readmeRows(): Map<string, Row> {
  const text = readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## Metrics (Prometheus)'));
  const rows = new Map<string, Row>();
  for (const line of section.slice(0, section.indexOf('\n## ', 3)).split('\n')) {
    const m = /^\|\s*`(vmhostd_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = [...(m[3] ?? '').matchAll(/`(\w+)`/g)].map((x) => x[1] ?? '');
    rows.set(m[1] ?? '', { type: m[2] ?? '', labels });
  }
  return rows;
}

describe('README metrics table', () => {
  it('lists exactly the vmhostd_ metrics, with their types and labels', async () => {
    const scrape = await everyMetricOnce();
    const rows = readmeRows();
    const exported = [...scrape.families.keys()].filter((n) => n.startsWith('vmhostd_')).sort();
    expect([...rows.keys()].sort()).toEqual(exported);
    for (const name of exported) {
      const row = rows.get(name);
      expect(row?.type, name).toBe(scrape.family(name).type);
      const labels = new Set(scrape.series(name).flatMap((l) => Object.keys(l)));
      expect(new Set(row?.labels), name).toEqual(labels);
    }
  });
});
