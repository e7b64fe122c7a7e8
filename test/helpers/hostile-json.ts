// Hostile JSON for fuzz tests, built as text by hand: keys like __proto__ stay
// own properties, and numbers JSON.stringify cannot write (1e400, -0) can be
// sent. Each test supplies its own adversarial strings, numbers and keys.
import fc from 'fast-check';

export type JsonNode =
  | { t: 'raw'; text: string }
  | { t: 'arr'; items: JsonNode[] }
  | { t: 'obj'; entries: [string, JsonNode][] };

export function jsonText(n: JsonNode): string {
  if (n.t === 'raw') return n.text;
  if (n.t === 'arr') return `[${n.items.map(jsonText).join(',')}]`;
  return `{${n.entries.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
}

export const raw = (v: unknown): JsonNode => ({ t: 'raw', text: JSON.stringify(v) ?? 'null' });

export interface HostileParts {
  strings: fc.Arbitrary<string>;
  numbers: fc.Arbitrary<JsonNode>;
  keys: fc.Arbitrary<string>;
  /** Nesting depth range of the deliberately deep arrays/objects. */
  deep: { min: number; max: number };
  /** Largest array / object built from random members. */
  maxLength: number;
}

/** Any JSON value: hostile scalars, deep nesting, and arrays/objects of those. */
export function hostileValue(p: HostileParts): fc.Arbitrary<JsonNode> {
  const deep = fc.tuple(fc.integer({ min: p.deep.min, max: p.deep.max }), fc.boolean()).map(
    ([n, arr]): JsonNode => ({
      t: 'raw',
      text: arr ? `${'['.repeat(n)}${']'.repeat(n)}` : `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`,
    }),
  );
  return fc.letrec<{ value: JsonNode }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      p.strings.map(raw),
      p.numbers,
      fc.constantFrom(raw(true), raw(false), raw(null)),
      deep,
      fc.array(tie('value'), { maxLength: p.maxLength }).map((items): JsonNode => ({ t: 'arr', items })),
      fc
        .array(fc.tuple(p.keys, tie('value')), { maxLength: p.maxLength })
        .map((entries): JsonNode => ({ t: 'obj', entries })),
    ),
  })).value;
}
