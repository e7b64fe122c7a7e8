// The one-screen status of the daemon (Host.getStatus, vmhost-client
// status): the same figures as the metrics, as one JSON object. Its
// published schema is HostStatus in src/api/schemas.ts; the daemon's wiring
// only compiles while this type fits it.
import type { InFlightOperation, OutcomeEntry } from './operations-log.js';

export interface HostStatus {
  startedAt: string;
  uptimeSeconds: number;
  libvirt: {
    connected: boolean;
    /** Times the connection was re-established since the daemon started. */
    reconnects: number;
    /** When the connection last went up or down. */
    since: string | null;
  };
  vms: { total: number; byStatus: Record<string, number> };
  dimms: { plugged: number; unplugging: number };
  /** Connected clients per transport. */
  clients: Record<string, number>;
  /** Oldest first. */
  inFlight: (InFlightOperation & { vmName: string | null })[];
  /** The last 10 outcomes, newest first. */
  recent: (OutcomeEntry & { vmName: string | null })[];
}
