/**
 * Deleting an export's files, shared by the cancel route (a queued export may hold parts of an
 * earlier run), the worker (cancel, failure) and the retention sweeper. Only a delete that
 * succeeded marks the export purged: until then the sweeper lists it and tries again.
 */
import type { ExportRecord } from "./domain/export.js";
import { exportPrefix } from "./domain/naming.js";
import type { MetadataStore } from "./metadata/types.js";
import { storageOp } from "./storage/errors.js";
import type { ObjectStore } from "./storage/types.js";

/** Throws a StorageError when the object store fails; the export then stays unpurged. */
export async function purgeExportFiles(
  store: MetadataStore,
  storage: ObjectStore,
  record: Pick<ExportRecord, "id" | "tenantId">,
  now: number,
): Promise<void> {
  await storageOp(() => storage.deletePrefix(exportPrefix(record.tenantId, record.id)));
  await store.markPurged(record.id, now);
}
