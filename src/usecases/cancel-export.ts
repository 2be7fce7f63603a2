/**
 * Canceling an export: the store cancels it if the transition table lets it (from queued or
 * running: the statuses `fromStatesFor` gives for a cancel, in one conditional update), then its published files are
 * deleted. A running export's worker notices at its next heartbeat and drops the part it
 * was writing.
 */
import type { Logger } from "pino";
import { AppError } from "../domain/errors.js";
import type { ExportRecord } from "../domain/export.js";
import { isUuid } from "../domain/ids.js";
import type { ExportsPort } from "../metadata/types.js";
import type { ObjectStore } from "../object-store/types.js";
import { purgeExportFiles } from "./purge-export.js";

/** How long a cancel's answer waits for its files to be deleted (usually milliseconds). */
const PURGE_WAIT_MS = 1000;

export interface CancelExportDeps {
  exports: ExportsPort;
  storage: ObjectStore;
  clock: () => number;
}

/**
 * Cancels the tenant's export and deletes what is published; returns the export after the cancel.
 * Throws AppError `not_found`, or `not_cancellable` (with the current status) once it is final.
 * When the object store fails or hangs, the cancel still stands (answered within PURGE_WAIT_MS):
 * the purge goes on in the background, and the retention sweeper deletes what it could not.
 */
export async function cancelExport(
  deps: CancelExportDeps,
  tenantId: string,
  id: string,
  log: Pick<Logger, "info" | "warn">,
): Promise<ExportRecord> {
  const result = isUuid(id) ? await deps.exports.cancelExport(tenantId, id, deps.clock()) : null;
  if (!result) throw new AppError("not_found", "No export with this id.");
  const { record } = result;
  if (!result.canceled) {
    throw new AppError("not_cancellable", `The export is ${record.status} and can no longer be canceled.`, [
      { field: "status", code: record.status, message: `Current status: ${record.status}.` },
    ]);
  }
  log.info({ export_id: record.id }, "export canceled");
  // Delete what is published now: a queued export (parts of an interrupted run) has no worker to
  // do it; for a running one, its worker also drops the part it was writing.
  // The answer waits for the purge at most PURGE_WAIT_MS: the cancel stands either way, and an
  // object store that hangs must not hold the request (the purge goes on; the sweeper retries it).
  if (record.parts.length > 0) {
    const purging = purgeExportFiles(deps.exports, deps.storage, record, deps.clock()).catch((err: unknown) =>
      log.warn({ err, export_id: record.id }, "deleting the files failed; the sweeper retries"),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([purging, new Promise((done) => (timer = setTimeout(done, PURGE_WAIT_MS)))]);
    clearTimeout(timer);
  }
  return record;
}
