// Memory sizes on the command line. Strict on purpose: "MB"/"GB" are refused
// (decimal or binary? an operator removing memory must not have to guess), and
// a bare number means MiB, the unit the API and the VDSM engine use.

import { UsageError } from './errors.js';

const MIB = 1024 * 1024;

const UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: MIB,
  gib: 1024 * MIB,
  tib: 1024 * 1024 * MIB,
};

/** Parses "256MiB", "1.5GiB", "1400" (MiB), "268435456B" into bytes. */
export function parseSizeBytes(what: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) {
    throw new UsageError(
      `${what}: "${text}" is not a size (examples: 256MiB, 1.5GiB, 1400 = MiB, 268435456B)`,
    );
  }
  const unit = (m[2] ?? '').toLowerCase();
  const factor = unit === '' ? MIB : UNITS[unit];
  if (factor === undefined) {
    const hint = /^[kmgt]b?$/.test(unit) ? `; write ${unit[0]?.toUpperCase()}iB` : '';
    throw new UsageError(`${what}: unknown unit "${m[2]}" (use B, KiB, MiB, GiB or TiB${hint})`);
  }
  const bytes = Number(m[1]) * factor;
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`${what}: "${text}" is not a whole number of bytes or is too large`);
  }
  return bytes;
}

/** Like parseSizeBytes, but the result must be a whole, positive number of MiB. */
export function parseSizeMiB(what: string, text: string): number {
  const bytes = parseSizeBytes(what, text);
  if (bytes % MIB !== 0) throw new UsageError(`${what}: "${text}" is not a whole number of MiB`);
  return bytes / MIB;
}

export function formatMiB(mib: number): string {
  return `${mib} MiB`;
}

export function bytesToMiBFloor(bytes: number): number {
  return Math.floor(bytes / MIB);
}
