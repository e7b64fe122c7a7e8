// The memory device of VM.hotplugMemory / VM.hotunplugMemory as the engine
// sends it: VDSM's VmMemoryDevice dict (with ovirt-engine's extra `type` and
// string-valued `specParams` and `address`), or VDSM 4.4's `xml` form. Both
// become one checked dict, then the domain layer's spec; the XML is parsed
// here (no DTDs, no entities, only the elements a DIMM has) and never passed
// on to libvirt.
import type { ValidateFunction } from 'ajv';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { RpcError } from '../rpc/errors.js';
import type { JsonSchema } from '../rpc/method.js';
import { createAjv, describeAjvError } from '../rpc/validation.js';
import type { HotplugSpec, HotunplugSpec } from '../virt/types.js';
import { invalidParam } from './error-mapping.js';
import { type HotplugMemoryParams, VmMemoryDevice } from './schemas.js';

const FIELD = 'params.params';

let validateDevice: ValidateFunction | undefined;
function deviceValidator(): ValidateFunction {
  validateDevice ??= createAjv().compile(VmMemoryDevice as unknown as JsonSchema);
  return validateDevice;
}

const uint = (v: string | number): number => (typeof v === 'number' ? v : Number(v));

/** Exactly one of `memory` and `xml`, as one checked VmMemoryDevice. */
export function memoryOf(p: HotplugMemoryParams): VmMemoryDevice {
  if (p.memory !== undefined && p.xml !== undefined) {
    throw invalidParam(
      `${FIELD}.xml`,
      'exactly one of memory, xml',
      'must not be given together with memory',
    );
  }
  if (p.memory === undefined && p.xml === undefined) {
    throw invalidParam(`${FIELD}.memory`, 'exactly one of memory, xml', 'is required (or xml)');
  }
  const mem = p.memory ?? deviceFromXml(p.xml ?? '');
  checkConsistent(mem, p.memory === undefined ? `${FIELD}.xml` : `${FIELD}.memory`);
  return mem;
}

/** What JSON Schema cannot say: specParams agree with size/node. */
function checkConsistent(m: VmMemoryDevice, field: string): void {
  const sp = m.specParams;
  if (sp?.size !== undefined && uint(sp.size) !== m.size) {
    throw invalidParam(`${field}.specParams.size`, 'equals size', `must equal size (${m.size})`);
  }
  if (sp?.node !== undefined && uint(sp.node) !== m.node) {
    throw invalidParam(`${field}.specParams.node`, 'equals node', `must equal node (${m.node})`);
  }
}

/** The DIMM to plug: the engine's alias if it sent one, else ua-<deviceId>, else the daemon picks. */
export function toHotplugSpec(m: VmMemoryDevice, field = `${FIELD}.memory`): HotplugSpec {
  if (m.address?.slot !== undefined || m.address?.base !== undefined) {
    throw invalidParam(
      `${field}.address`,
      'no slot or base on hot plug',
      'must not name a slot or base: the daemon picks the next free slot',
    );
  }
  const alias = m.alias ?? (m.deviceId === undefined ? undefined : `ua-${m.deviceId.toLowerCase()}`);
  return alias === undefined ? { size: m.size, node: m.node } : { size: m.size, node: m.node, alias };
}

/** The DIMM to unplug, found by alias and, where given, slot and base. */
export function toHotunplugSpec(m: VmMemoryDevice, field = `${FIELD}.memory`): HotunplugSpec {
  if (m.alias === undefined) {
    throw invalidParam(`${field}.alias`, 'required', 'is required: it names the DIMM to remove');
  }
  const spec: HotunplugSpec = { size: m.size, node: m.node, alias: m.alias };
  if (m.address?.slot !== undefined || m.address?.base !== undefined) {
    spec.address = {};
    if (m.address.slot !== undefined) spec.address.slot = uint(m.address.slot);
    if (m.address.base !== undefined) spec.address.base = m.address.base;
  }
  return spec;
}

// ------------------------------------------------------------------ XML form

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  trimValues: true,
  commentPropName: '#comment',
  // Elements always as arrays, so "exactly one" is a length check.
  isArray: (_name, _jpath, _leaf, isAttribute) => !isAttribute,
});

type XmlNode = Record<string, unknown>;

const XML = `${FIELD}.xml`;

function bad(where: string, rule: string, message: string): RpcError {
  return invalidParam(`${XML} ${where}`, rule, message);
}

function isNode(v: unknown): v is XmlNode {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The one element `name` under `parent` (or none when optional). */
function one(parent: XmlNode, name: string, where: string, optional: boolean): XmlNode | string | undefined {
  const v = parent[name];
  if (v === undefined) {
    if (optional) return undefined;
    throw bad(where, 'required', `needs one <${name}>`);
  }
  if (!Array.isArray(v) || v.length !== 1) throw bad(where, 'exactly one', `must have exactly one <${name}>`);
  return v[0] as XmlNode | string;
}

function onlyKeys(node: XmlNode, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(node)) {
    if (k === '#comment') continue;
    if (!allowed.includes(k)) {
      const what = k.startsWith('@')
        ? `attribute ${k.slice(1, 41)}`
        : k === '#text'
          ? 'text'
          : `<${k.slice(0, 40)}>`;
      throw bad(
        where,
        'allowed content',
        `${what} is not allowed here (allowed: ${allowed.join(', ') || 'nothing'})`,
      );
    }
  }
}

function textOf(v: XmlNode | string | undefined, where: string): string {
  if (typeof v === 'string') return v;
  if (isNode(v) && typeof v['#text'] === 'string') return v['#text'];
  throw bad(where, 'text', 'must contain a value');
}

function attr(node: XmlNode, name: string): string | undefined {
  const v = node[`@${name}`];
  return typeof v === 'string' ? v : undefined;
}

/** libvirt's size units, in KiB (KiB is the default). */
const KIB_PER_UNIT: Record<string, number> = {
  k: 1,
  KiB: 1,
  M: 1024,
  MiB: 1024,
  G: 1024 * 1024,
  GiB: 1024 * 1024,
};

function sizeMiB(node: XmlNode | string | undefined, where: string): number {
  const unit = isNode(node) ? (attr(node, 'unit') ?? 'KiB') : 'KiB';
  if (isNode(node)) onlyKeys(node, ['#text', '@unit'], where);
  const per = KIB_PER_UNIT[unit];
  if (per === undefined)
    throw bad(
      where,
      'unit',
      `unit "${unit.slice(0, 20)}" is not one of ${Object.keys(KIB_PER_UNIT).join(', ')}`,
    );
  const text = textOf(node, where);
  if (!/^[0-9]{1,12}$/.test(text)) throw bad(where, 'integer', 'must be a non-negative integer');
  const kib = Number(text) * per;
  if (kib % 1024 !== 0) throw bad(where, 'whole MiB', 'must be a whole number of MiB');
  return kib / 1024;
}

/** <devices><memory model='dimm'>…</memory></devices> as a VmMemoryDevice dict, checked like one. */
export function deviceFromXml(xml: string): VmMemoryDevice {
  if (/<!DOCTYPE|<!ENTITY|<!\[CDATA\[/i.test(xml)) {
    throw invalidParam(XML, 'no DTD', 'DTDs, entities and CDATA are not accepted');
  }
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw invalidParam(
      XML,
      'well-formed XML',
      `is not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`,
    );
  }
  const doc = parser.parse(xml) as XmlNode;
  onlyKeys(doc, ['devices'], 'document');
  const devices = one(doc, 'devices', 'document', false);
  if (!isNode(devices)) throw bad('<devices>', 'exactly one', "must hold exactly one <memory model='dimm'>");
  onlyKeys(devices, ['memory'], '<devices>');
  const memory = one(devices, 'memory', '<devices>', false);
  if (!isNode(memory)) throw bad('<memory>', 'content', 'must have a <target>');
  onlyKeys(memory, ['@model', 'target', 'alias', 'address'], '<memory>');
  if (attr(memory, 'model') !== 'dimm') throw bad('<memory>', "model='dimm'", "must have model='dimm'");
  const target = one(memory, 'target', '<memory>', false);
  if (!isNode(target)) throw bad('<target>', 'content', 'must have <size> and <node>');
  onlyKeys(target, ['size', 'node'], '<target>');
  const nodeText = textOf(one(target, 'node', '<target>', false), '<target><node>');
  if (!/^[0-9]{1,2}$/.test(nodeText)) throw bad('<target><node>', 'integer', 'must be a NUMA node number');
  const dict: Record<string, unknown> = {
    size: sizeMiB(one(target, 'size', '<target>', false), '<target><size>'),
    node: Number(nodeText),
  };
  const alias = one(memory, 'alias', '<memory>', true);
  if (alias !== undefined) {
    if (!isNode(alias)) throw bad('<alias>', 'name', 'must be <alias name="…"/>');
    onlyKeys(alias, ['@name'], '<alias>');
    dict.alias = attr(alias, 'name');
  }
  const address = one(memory, 'address', '<memory>', true);
  if (address !== undefined) {
    if (!isNode(address))
      throw bad('<address>', 'attributes', "must be <address type='dimm' slot='…' base='…'/>");
    onlyKeys(address, ['@type', '@slot', '@base'], '<address>');
    const a: Record<string, string> = {};
    for (const k of ['type', 'slot', 'base'] as const) {
      const v = attr(address, k);
      if (v !== undefined) a[k] = v;
    }
    dict.address = a;
  }
  const check = deviceValidator();
  if (!check(dict)) {
    const first = check.errors?.[0];
    const problem = first
      ? describeAjvError(first)
      : { field: 'params', rule: 'schema', message: 'is invalid' };
    // "params.alias" (the dict's own path) -> "params.params.xml alias".
    throw invalidParam(
      `${XML} ${problem.field.replace(/^params\.?/, '') || 'memory'}`,
      problem.rule,
      problem.message,
    );
  }
  return dict as VmMemoryDevice;
}
