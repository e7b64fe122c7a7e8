// A MethodSpec whose params and result are TypeBox schemas: the handler's
// argument and return types are the schemas' static types, so a handler
// cannot return what its published result schema does not describe.
import type { Static, TSchema } from '@sinclair/typebox';
import type { MethodContext, MethodSpec } from '../rpc/method.js';
import type { RawJson } from '../rpc/raw-json.js';

export interface TypedMethod<P extends TSchema, R extends TSchema> {
  name: string;
  summary: string;
  params: P;
  result: R;
  errors?: { code: number; message: string }[];
  logLevel?: 'debug' | 'info';
  /** Changes nothing: may be called as a notification (see MethodSpec.readOnly). */
  readOnly?: boolean;
  /** A RawJson answer (the result already serialised) keeps the result's type. */
  handler(params: Static<P>, ctx: MethodContext): Promise<Static<R> | RawJson<Static<R>>>;
}

export function defineMethod<P extends TSchema, R extends TSchema>(m: TypedMethod<P, R>): MethodSpec {
  return m as unknown as MethodSpec;
}
