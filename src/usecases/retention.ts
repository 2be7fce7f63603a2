/**
 * Retention, one pass: deletes the files of succeeded exports past their expiry (they expire) and of
 * failed or canceled ones, then forgets exports entirely once their metadata is older than the
 * forget horizon (180 days by default), and drops idempotency keys older than 24 hours.
 */
import type { Logger } from "pino";
import { IDEMPOTENCY_KEY_TTL_MS } from "../domain/export.js";
import type { RetentionPort } from "../metadata/types.js";
import type { ObjectStore } from "../object-store/types.js";
import { purgeExportFiles } from "./purge-export.js";

export interface RetentionDeps {
  retention: RetentionPort;
  storage: ObjectStore;
  forgetAfterDays: number;
  logger: Logger;
  clock: () => number;
}

const BATCH = 100;

/**
 * Runs one retention pass. A purge that fails leaves its export unpurged, so the next pass lists it
 * again: that is the retry. Throws what the metadata store throws (StoreUnavailableError included).
 */
export async function sweepRetention(deps: RetentionDeps): Promise<void> {
  const { retention, storage, logger, clock } = deps;
  for (;;) {
    const now = clock();
    const due = await retention.listExportsToPurge(now, BATCH);
    let failed = 0;
    for (const record of due) {
      try {
        await purgeExportFiles(retention, storage, record, now);
      } catch (err) {
        failed++;
        logger.warn({ err, export_id: record.id }, "deleting an export's files failed; next sweep retries");
      }
    }
    if (due.length > failed) {
      logger.info({ count: due.length - failed }, "export files deleted by retention");
    }
    // A page with failures would come back as it is: stop here rather than spin on it.
    if (due.length < BATCH || failed > 0) break;
  }
  const horizon = clock() - deps.forgetAfterDays * 86_400_000;
  let forgotten = 0;
  for (let n = BATCH; n === BATCH; forgotten += n) n = await retention.forgetExports(horizon, BATCH);
  if (forgotten > 0) logger.info({ count: forgotten }, "old exports forgotten");
  await retention.forgetIdempotencyKeys(clock() - IDEMPOTENCY_KEY_TTL_MS);
}
