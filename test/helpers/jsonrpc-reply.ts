// What fuzz tests require of every JSON-RPC reply: the 2.0 envelope, an id
// of a legal type, and an error object with one of the expected codes.

/** Returns what is wrong with the reply, or null when it is well formed. */
export function replyProblem(r: unknown, allowedCodes: ReadonlySet<number>): string | null {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'reply not an object';
  const o = r as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys !== 'error,id,jsonrpc' && keys !== 'id,jsonrpc,result') return `bad keys ${keys}`;
  if (o.jsonrpc !== '2.0') return 'bad jsonrpc';
  if (!(typeof o.id === 'string' || typeof o.id === 'number' || o.id === null)) return 'bad id';
  if ('error' in o) {
    const e = o.error as Record<string, unknown>;
    if (typeof e !== 'object' || e === null) return 'error not an object';
    if (!Number.isInteger(e.code) || typeof e.message !== 'string') return 'bad error';
    if (!allowedCodes.has(e.code as number)) return `unexpected code ${String(e.code)}`;
    if ('data' in e && (typeof e.data !== 'object' || e.data === null)) return 'bad error data';
  }
  return null;
}
