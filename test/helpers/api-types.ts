// The API's result shapes as tests see them on the wire (the same types the
// VM manager returns, so a contract change breaks the tests' compile too).
export type {
  SetMemoryResult,
  UnplugResult,
  VmStats as Stats,
  VmStatsDevice as Dimm,
} from '../../src/virt/types.js';
