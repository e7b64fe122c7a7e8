// Reads the TOML config file into validated settings. Unknown sections or keys
// are errors (a typo must not silently fall back to a default).

import { readFileSync } from 'node:fs';
import { parse, TomlError } from 'smol-toml';
import { checkValue, isKeyName, KEYS, type KeyName, type Value } from './keys.js';
import { ConfigError } from './types.js';

const SECTIONS = new Set(Object.keys(KEYS).map((k) => k.split('.')[0]));

function isTable(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
}

/** Validates an already parsed TOML document. */
export function settingsFromToml(doc: Record<string, unknown>): Partial<Record<KeyName, Value>> {
  const out: Partial<Record<KeyName, Value>> = {};
  for (const [section, body] of Object.entries(doc)) {
    if (!SECTIONS.has(section)) {
      throw new ConfigError(section, `unknown key (known sections: ${[...SECTIONS].join(', ')})`);
    }
    if (!isTable(body)) throw new ConfigError(section, 'must be a table ([section])');
    for (const [name, value] of Object.entries(body)) {
      const key = `${section}.${name}`;
      if (!isKeyName(key)) {
        const known = Object.keys(KEYS)
          .filter((k) => k.startsWith(`${section}.`))
          .join(', ');
        throw new ConfigError(key, `unknown key (known in [${section}]: ${known})`);
      }
      out[key] = checkValue(key, key, value, false);
    }
  }
  return out;
}

/** Reads and validates the file at `path`; errors name the file or the key. */
export function readTomlSettings(path: string): Partial<Record<KeyName, Value>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new ConfigError(path, `cannot read config file (${code})`);
  }
  let doc: Record<string, unknown>;
  try {
    doc = parse(text);
  } catch (e) {
    if (e instanceof TomlError) {
      const first = e.message.split('\n')[0] ?? 'syntax error';
      throw new ConfigError(path, `TOML syntax error at line ${e.line}, column ${e.column}: ${first}`);
    }
    throw new ConfigError(path, `cannot parse: ${String(e)}`);
  }
  return settingsFromToml(doc);
}
