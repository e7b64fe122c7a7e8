// The API's result shapes as tests see them on the wire: the static types of
// the contract's own schemas (src/api/schemas.ts), so a contract change
// breaks the tests' compile too.
export type {
  SetMemoryResult,
  UnplugResult,
  VmStats as Stats,
  VmStatsDevice as Dimm,
} from '../../src/api/schemas.js';
