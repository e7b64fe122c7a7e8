// Aligned plain-text tables, like virsh's: a header row, then one row per item,
// columns padded to the widest cell, numbers right-aligned.

export interface Column {
  header: string;
  align?: 'left' | 'right';
}

function width(s: string): number {
  return [...s].length;
}

/** Control characters from data must not move the cursor or forge lines. */
export function sanitizeCell(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

export function renderTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const clean = rows.map((r) => columns.map((_, i) => sanitizeCell(r[i] ?? '')));
  const widths = columns.map((c, i) => Math.max(width(c.header), ...clean.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => {
        const w = widths[i] ?? 0;
        const pad = ' '.repeat(Math.max(0, w - width(cell)));
        const last = i === cells.length - 1;
        if (columns[i]?.align === 'right') return pad + cell;
        return last ? cell : cell + pad;
      })
      .join('  ');
  return `${[line(columns.map((c) => c.header)), ...clean.map(line)].join('\n')}\n`;
}

/** "Key:  value" lines with the values aligned. */
export function renderFields(fields: readonly (readonly [string, string])[]): string {
  const w = Math.max(...fields.map(([k]) => width(k))) + 1;
  return `${fields.map(([k, v]) => `${`${k}:`.padEnd(w)} ${sanitizeCell(v)}`.trimEnd()).join('\n')}\n`;
}
