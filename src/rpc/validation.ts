// Params validation: one ajv validator per method, compiled once at start.
// Strict and literal (no coercion, no defaults, nothing removed) so a handler
// sees exactly what the client sent, and only if it passed the schema.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { JsonSchema } from './method.js';

export interface ParamsProblem {
  /** Dotted path from "params", e.g. "params.memory.size". */
  field: string;
  /** The schema keyword that failed, e.g. "minimum", "required", "type". */
  rule: string;
  message: string;
  /** For enum: the allowed values. */
  allowed?: unknown[];
}

/** Client-supplied names echoed in errors are cut to this many characters. */
const MAX_NAME_ECHO = 128;

export function createAjv(): Ajv {
  return new Ajv({
    allErrors: false,
    strict: true,
    strictNumbers: true,
    coerceTypes: false,
    useDefaults: false,
    removeAdditional: false,
    allowUnionTypes: true,
    // Lets specs carry OpenRPC/JSON-Schema annotations without tripping strict mode.
    keywords: ['example', 'x-unit'],
  });
}

export function compileParams(ajv: Ajv, method: string, schema: JsonSchema): ValidateFunction {
  try {
    return ajv.compile(schema);
  } catch (err) {
    throw new Error(`params schema of ${method} does not compile: ${(err as Error).message}`);
  }
}

export function truncate(s: string, max = MAX_NAME_ECHO): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

/** "/memory/size" -> "params.memory.size" (JSON pointer unescaped). */
function pointerToField(pointer: string): string {
  if (pointer === '') return 'params';
  let out = 'params';
  for (const seg of pointer.slice(1).split('/')) {
    out += `.${seg.replace(/~1/g, '/').replace(/~0/g, '~')}`;
  }
  return out;
}

export function describeAjvError(e: ErrorObject): ParamsProblem {
  let field = pointerToField(e.instancePath);
  const p = e.params as Record<string, unknown>;
  let message = e.message ?? 'is invalid';
  if (e.keyword === 'required' && typeof p.missingProperty === 'string') {
    field = `${field}.${truncate(p.missingProperty)}`;
    message = 'is required';
  } else if (e.keyword === 'additionalProperties' && typeof p.additionalProperty === 'string') {
    field = `${field}.${truncate(p.additionalProperty)}`;
    message = 'is not an allowed property';
  }
  const problem: ParamsProblem = { field: truncate(field, 256), rule: e.keyword, message };
  if (e.keyword === 'enum' && Array.isArray(p.allowedValues)) problem.allowed = p.allowedValues;
  return problem;
}
