// VDSM's `_not_migrating` guard: memory operations are refused (code 51)
// while an outgoing migration job runs on the VM. libvirt's job stats say so
// from the start of the job, not only once the VM is paused for the switch.
import { JobOperation, type JobStats, JobType, type LibvirtApi } from '../libvirt/types.js';
import { VirtError } from './errors.js';
import type { OpLog } from './op-context.js';
import type { VmRecord } from './vm-record.js';

/** As VDSM's migration.ongoing(): a job is running and its operation is an outgoing migration. */
export function isOutgoingMigration(stats: JobStats): boolean {
  return stats.type !== JobType.NONE && stats.params.operation === JobOperation.MIGRATION_OUT;
}

/**
 * Throws VirtError 'migrating' if an outgoing migration job is active. When
 * libvirt cannot say (an error), the operation goes on, as VDSM's recovery
 * check does: the operation itself then meets the VM's real state.
 */
export async function checkNotMigrating(client: LibvirtApi, vm: VmRecord, log: OpLog): Promise<void> {
  let stats: JobStats;
  try {
    stats = await client.getJobStats(vm.ref);
  } catch (err) {
    log('job stats unavailable; assuming no migration', { err: (err as Error).message });
    return;
  }
  if (isOutgoingMigration(stats)) {
    throw new VirtError(
      'migrating',
      'migrating',
      `VM ${vm.uuid} is migrating: command not supported during migration`,
      {
        vmId: vm.uuid,
      },
    );
  }
}
