// Public API of the libvirt client.

export {
  defaultSocketPath,
  LibvirtClient,
  type LibvirtClientOptions,
  type ReconnectOptions,
} from './client.js';
export { type CallOptions, type ConnectionOptions, LibvirtConnection } from './connection.js';
export * from './errors.js';
export { AgentTimeout } from './protocol.js';
export * from './types.js';
