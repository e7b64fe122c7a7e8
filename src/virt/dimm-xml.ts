// Builds <memory model='dimm'> device XML from typed, validated fields.
// Validation keeps the values to what libvirt itself would report, and every
// value is escaped as well, so nothing a caller sends can shape the XML.

/** Our user aliases, and libvirt's own names for DIMMs it named. */
const USER_ALIAS = /^ua-[A-Za-z0-9-]{1,100}$/;
const LIBVIRT_ALIAS = /^dimm\d{1,5}$/;
const BASE = /^0x[0-9a-fA-F]{1,16}$/;

export function isValidDimmAlias(alias: string): boolean {
  return USER_ALIAS.test(alias) || LIBVIRT_ALIAS.test(alias);
}

export function isUserAlias(alias: string): boolean {
  return USER_ALIAS.test(alias);
}

export interface DimmSpec {
  sizeMiB: number;
  node: number;
  alias: string;
  slot?: number;
  base?: string;
}

function check(spec: DimmSpec, forAttach: boolean): void {
  if (!Number.isSafeInteger(spec.sizeMiB) || spec.sizeMiB <= 0)
    throw new RangeError('DIMM size must be a positive integer (MiB)');
  if (!Number.isSafeInteger(spec.node) || spec.node < 0)
    throw new RangeError('DIMM node must be a non-negative integer');
  if (forAttach ? !USER_ALIAS.test(spec.alias) : !isValidDimmAlias(spec.alias)) {
    throw new RangeError(
      `DIMM alias must match ${forAttach ? USER_ALIAS : `${USER_ALIAS} or ${LIBVIRT_ALIAS}`}`,
    );
  }
  if (spec.slot !== undefined && (!Number.isSafeInteger(spec.slot) || spec.slot < 0)) {
    throw new RangeError('DIMM slot must be a non-negative integer');
  }
  if (spec.base !== undefined && !BASE.test(spec.base))
    throw new RangeError('DIMM base must be a hex address 0x…');
}

/** Escapes an attribute or text value (the checks above already keep them to safe characters). */
function esc(v: string): string {
  return v.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// A template, not the XML builder: this is on every unplug's path and the
// builder cost tens of µs per fragment. The output is the builder's, byte for
// byte (test/unit/virt-dimm-xml.test.ts).
function build(spec: DimmSpec): string {
  const slot = spec.slot !== undefined ? ` slot="${spec.slot}"` : '';
  const base = spec.base !== undefined ? ` base="${esc(spec.base.toLowerCase())}"` : '';
  const address = slot || base ? `<address type="dimm"${slot}${base}/>` : '';
  return `<memory model="dimm"><target><size unit="KiB">${spec.sizeMiB * 1024}</size><node>${spec.node}</node></target><alias name="${esc(spec.alias)}"/>${address}</memory>`;
}

/** Device XML for attach: a user alias (ua-…), optionally the slot to use. */
export function buildAttachDimmXml(spec: DimmSpec): string {
  check(spec, true);
  return build(spec);
}

/**
 * Device XML for detach: target size/node, alias and address (slot and base),
 * so libvirt matches exactly that DIMM even among same-size ones.
 */
export function buildDetachDimmXml(spec: DimmSpec): string {
  check(spec, false);
  return build(spec);
}
