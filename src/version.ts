// The daemon's own version, read once from package.json (one level above
// both src/ and dist/).
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export const DAEMON_VERSION: string = pkg.version;
/** Bumped when the JSON-RPC contract changes incompatibly. */
export const API_VERSION = '1.0';

/** libvirt encodes versions as major * 1,000,000 + minor * 1,000 + release. */
export function formatLibvirtVersion(v: number): string {
  return `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`;
}
