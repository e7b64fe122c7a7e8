// JSON Schemas of the API's params and results. They validate every request
// before a handler runs and are published through rpc.discover, so the
// contract engines read is the one we enforce.
import type { JsonSchema } from '../rpc/method.js';

/** 16 TiB in MiB: far above any real VM, low enough that sums stay exact. */
export const MAX_MIB = 16 * 1024 * 1024;
export const MAX_BYTES = MAX_MIB * 1024 * 1024;
export const MAX_TIMEOUT_S = 3600;

export const uuidSchema: JsonSchema = {
  type: 'string',
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'VM UUID',
};

/** Our own aliases (ua-…) or the ones libvirt assigns when none is given (dimmN). */
export const aliasSchema: JsonSchema = {
  type: 'string',
  pattern: '^(ua-[A-Za-z0-9-]{1,64}|dimm[0-9]{1,4})$',
  description: 'device alias: "ua-" followed by letters, digits or dashes, or libvirt\'s "dimmN"',
};

const mib = (description: string, minimum = 1): JsonSchema => ({
  type: 'integer',
  minimum,
  maximum: MAX_MIB,
  description,
});

const bytes = (description: string, minimum = 0): JsonSchema => ({
  type: 'integer',
  minimum,
  maximum: MAX_BYTES,
  description,
});

const timeoutSchema: JsonSchema = {
  type: 'number',
  exclusiveMinimum: 0,
  maximum: MAX_TIMEOUT_S,
  description: 'seconds to wait for the guest to release the device',
};

const nodeSchema: JsonSchema = { type: 'integer', minimum: 0, maximum: 63, description: 'guest NUMA node' };

export const noParams: JsonSchema = { type: 'object', properties: {}, additionalProperties: false };

export const vmIdParams: JsonSchema = {
  type: 'object',
  properties: { vmID: uuidSchema },
  required: ['vmID'],
  additionalProperties: false,
};

/** VDSM's envelope for memory device calls: {vmID, params:{vmId, memory, memGuaranteedSize?}, ...extra}. */
function memoryDeviceParams(memory: JsonSchema, extra: Record<string, JsonSchema> = {}): JsonSchema {
  return {
    type: 'object',
    properties: {
      vmID: uuidSchema,
      params: {
        type: 'object',
        properties: {
          vmId: uuidSchema,
          memory,
          memGuaranteedSize: mib('guaranteed memory to set, MiB', 0),
        },
        required: ['vmId', 'memory'],
        additionalProperties: false,
      },
      ...extra,
    },
    required: ['vmID', 'params'],
    additionalProperties: false,
  };
}

export const hotplugParams: JsonSchema = memoryDeviceParams({
  type: 'object',
  properties: { size: mib('DIMM size in MiB'), node: nodeSchema, alias: aliasSchema },
  required: ['size', 'node'],
  additionalProperties: false,
});

export const hotunplugParams: JsonSchema = memoryDeviceParams(
  {
    type: 'object',
    properties: {
      size: mib('DIMM size in MiB'),
      node: nodeSchema,
      alias: aliasSchema,
      address: {
        type: 'object',
        properties: {
          type: { const: 'dimm' },
          slot: { type: 'integer', minimum: 0, maximum: 255 },
          base: { type: 'string', pattern: '^0x[0-9a-fA-F]{1,16}$' },
        },
        additionalProperties: false,
      },
    },
    required: ['size', 'node', 'alias'],
    additionalProperties: false,
  },
  { timeout: timeoutSchema },
);

export const setMemoryParams: JsonSchema = {
  type: 'object',
  properties: {
    vmID: uuidSchema,
    memory: bytes('requested VM memory in bytes (floored to MiB)', 1),
    guaranteed: bytes('requested guaranteed memory in bytes'),
    timeout: timeoutSchema,
  },
  required: ['vmID', 'memory'],
  additionalProperties: false,
};

const memoryDevice: JsonSchema = {
  type: 'object',
  properties: {
    alias: { type: 'string' },
    size: { type: 'integer' },
    node: { type: 'integer' },
    slot: { type: 'integer' },
    base: { type: 'string' },
    state: { enum: ['plugged', 'unplugging'] },
  },
  required: ['alias', 'size', 'node', 'slot', 'base', 'state'],
};

export const vmStatsSchema: JsonSchema = {
  type: 'object',
  properties: {
    vmId: { type: 'string' },
    vmName: { type: 'string' },
    status: { type: 'string' },
    memSize: { type: 'integer', description: 'MiB, base + DIMMs' },
    memGuaranteedSize: { type: 'integer' },
    hash: { type: 'string' },
    balloonActive: { type: 'boolean' },
    memoryDevices: { type: 'array', items: memoryDevice },
  },
  required: [
    'vmId',
    'vmName',
    'status',
    'memSize',
    'memGuaranteedSize',
    'hash',
    'balloonActive',
    'memoryDevices',
  ],
};

export const vmListSchema: JsonSchema = {
  type: 'array',
  items: {
    type: 'object',
    properties: { vmId: { type: 'string' }, vmName: { type: 'string' }, status: { type: 'string' } },
    required: ['vmId', 'vmName', 'status'],
  },
};

export const capabilitiesSchema: JsonSchema = {
  type: 'object',
  properties: {
    version: { type: 'string' },
    apiVersion: { type: 'string' },
    libvirtVersion: { type: 'string' },
    hypervisorVersion: { type: 'string' },
    hostname: { type: 'string' },
    libvirtConnected: { type: 'boolean' },
  },
  required: ['version', 'apiVersion', 'libvirtVersion', 'hypervisorVersion', 'hostname'],
};

export const unplugResultSchema: JsonSchema = {
  type: 'object',
  properties: {
    status: { const: 'removed' },
    alias: { type: 'string' },
    memSize: { type: 'integer' },
    memGuaranteedSize: { type: 'integer' },
  },
  required: ['status', 'alias', 'memSize', 'memGuaranteedSize'],
};

export const setMemoryResultSchema: JsonSchema = {
  type: 'object',
  properties: {
    memSize: { type: 'integer' },
    memGuaranteedSize: { type: 'integer' },
    unplugged: {
      type: 'array',
      items: { type: 'object', properties: { alias: { type: 'string' }, size: { type: 'integer' } } },
    },
    failed: {
      type: 'array',
      items: { type: 'object', properties: { alias: { type: 'string' }, reason: { type: 'string' } } },
    },
    nextRun: {
      type: 'object',
      properties: {
        updated: { type: 'boolean' },
        memory: { type: 'integer' },
        guaranteed: { type: 'integer' },
      },
    },
  },
  required: ['memSize', 'memGuaranteedSize', 'unplugged', 'failed', 'nextRun'],
};
