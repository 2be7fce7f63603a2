/**
 * Deleting an export's files, shared by the cancel use case (a queued export may hold parts of an
 * earlier run), the export job (cancel, failure) and the retention sweep. Only a delete that
 * succeeded marks the export purged: until then the sweeper lists it and tries again.
 */
import { canBePurged, type ExportRecord, type ExportStatus } from "../domain/export.js";
import { exportPrefix, tenantPrefix } from "../domain/naming.js";
import type { RetentionPort } from "../metadata/types.js";
import { storageOp } from "../object-store/errors.js";
import type { ObjectStore } from "../object-store/types.js";

/** The one store write a purge makes; every port that purges (exports, job queue, retention) has it. */
export type PurgeMarker = Pick<RetentionPort, "markPurged">;

/**
 * Deletes the files of an export whose status is `status` now (failed, canceled, or succeeded past
 * expiry, which then expires). Throws a StorageError when the object store fails; the export then
 * stays unpurged. Throws an Error for a status whose files must stay (a bug in the caller).
 */
export async function purgeExportFiles(
  store: PurgeMarker,
  storage: ObjectStore,
  record: Pick<ExportRecord, "id" | "tenantId"> & { status: ExportStatus },
  now: number,
): Promise<void> {
  if (!canBePurged(record.status))
    throw new Error(`the files of a ${record.status} export ${record.id} must not be deleted`);
  await storageOp(() => storage.deletePrefix(exportPrefix(record.tenantId, record.id)));
  await store.markPurged(record.id, now);
}

/**
 * Deletes every object of a tenant (each export's files, unpublished uploads too): the first step of
 * a tenant's deletion. Throws a StorageError when the object store fails.
 */
export async function purgeTenantFiles(storage: ObjectStore, tenantId: string): Promise<void> {
  await storageOp(() => storage.deletePrefix(tenantPrefix(tenantId)));
}
