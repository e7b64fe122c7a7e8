// The OpenRPC 1.2 document served by rpc.discover, generated from the same
// MethodSpecs whose schemas validate the params: the published contract and
// the enforced one cannot drift apart.

import { isRecord } from '../is-record.js';
import type { JsonSchema, MethodSpec } from './method.js';

export interface OpenRpcContentDescriptor {
  name: string;
  required?: boolean;
  description?: string;
  schema: JsonSchema;
}

export interface OpenRpcMethod {
  name: string;
  summary: string;
  paramStructure: 'by-name';
  params: OpenRpcContentDescriptor[];
  result: OpenRpcContentDescriptor;
  errors?: { code: number; message: string }[];
}

export interface OpenRpcDocument {
  openrpc: string;
  info: { title: string; version: string; description?: string };
  servers?: { name: string; url: string }[];
  methods: OpenRpcMethod[];
}

export const OPENRPC_VERSION = '1.2.6';

/** One content descriptor per property of the (object) params schema. */
function paramDescriptors(schema: JsonSchema): OpenRpcContentDescriptor[] {
  const props = isRecord(schema.properties) ? schema.properties : {};
  const required = Array.isArray(schema.required) ? schema.required : [];
  const out: OpenRpcContentDescriptor[] = [];
  for (const [name, sub] of Object.entries(props)) {
    if (!isRecord(sub)) continue;
    const d: OpenRpcContentDescriptor = { name, required: required.includes(name), schema: sub };
    if (typeof sub.description === 'string') d.description = sub.description;
    out.push(d);
  }
  return out;
}

export function buildOpenRpcDocument(
  specs: readonly MethodSpec[],
  info: { title: string; version: string; serverUrl?: string },
): OpenRpcDocument {
  const doc: OpenRpcDocument = {
    openrpc: OPENRPC_VERSION,
    info: { title: info.title, version: info.version },
    methods: specs.map((s) => {
      const m: OpenRpcMethod = {
        name: s.name,
        summary: s.summary,
        paramStructure: 'by-name',
        params: paramDescriptors(s.params),
        result: { name: `${s.name}.result`, schema: s.result },
      };
      if (s.errors && s.errors.length > 0)
        m.errors = s.errors.map((e) => ({ code: e.code, message: e.message }));
      return m;
    }),
  };
  if (info.serverUrl) doc.servers = [{ name: info.title, url: info.serverUrl }];
  return doc;
}
