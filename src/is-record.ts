// One type guard for "a plain JSON object" (not null, not an array), shared by
// the transports and the REST front.
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
