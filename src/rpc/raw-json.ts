// A method result that is already JSON text (a cache of what the result
// serialises to), embedded in the reply as is. VM stats are serialised once
// per change of the VM and answered from that text: getStats and
// getAllVmStats then cost a string concatenation, not a JSON.stringify of
// every VM's devices (bench/README.md, issue 12). The type parameter keeps
// the result's type, so a handler still cannot answer what its schema does
// not describe.

import type { JSONRPCResponse } from 'json-rpc-2.0';

export class RawJson<T = unknown> {
  declare readonly __value?: T;
  /** `text` must be the JSON of a value of type T (the caller's promise; not re-parsed here). */
  constructor(readonly text: string) {}
}

function one(r: JSONRPCResponse): string {
  if ('result' in r) {
    const result = r.result instanceof RawJson ? r.result.text : JSON.stringify(r.result);
    // Built by hand (2.5x faster than stringifying the envelope; issue 12). undefined
    // serialises to nothing: JSON.stringify of the whole reply drops such a key.
    if (result !== undefined && r.id !== undefined)
      return `{"jsonrpc":"2.0","id":${JSON.stringify(r.id)},"result":${result}}`;
  }
  return JSON.stringify(r);
}

/** JSON.stringify of a reply or batch, with RawJson results embedded; throws as JSON.stringify does. */
export function stringifyReply(res: JSONRPCResponse | JSONRPCResponse[]): string {
  return Array.isArray(res) ? `[${res.map(one).join(',')}]` : one(res);
}
