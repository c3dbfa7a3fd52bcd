import { JOBS } from './names.js';
import type { MemoryQueues } from './memory-queues.js';

/** Id of the maintenance job scheduler (one per deployment, upserted by every process). */
export const MAINTENANCE_SCHEDULER_ID = 'memq-maintenance';

/**
 * Creates or updates the maintenance schedule: one BullMQ job scheduler on `memory-cleanup`
 * producing a `maintenance` job every `intervalMs`. `upsertJobScheduler` is idempotent, so every
 * boot of every replica may call it; there is always exactly one scheduled job.
 */
export async function upsertMaintenanceSchedule(
  queues: MemoryQueues,
  intervalMs: number,
): Promise<void> {
  await queues.cleanup.upsertJobScheduler(
    MAINTENANCE_SCHEDULER_ID,
    { every: intervalMs },
    {
      name: JOBS.maintenance,
      data: {},
      opts: { attempts: 1, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
    },
  );
}
