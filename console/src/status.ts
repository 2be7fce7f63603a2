/**
 * What the console needs to know about a status. The names come from the server's domain
 * (src/domain/status.ts, bundled), so the page never spells a status of its own.
 */
import { type ExportStatus, STATUS } from "../../src/domain/status.js";

const ACTIVE: ReadonlySet<ExportStatus> = new Set([STATUS.queued, STATUS.running]);

/** True once the export will not change any more (until the sweeper expires it). */
export function isFinalStatus(status: ExportStatus): boolean {
  return !ACTIVE.has(status);
}

export function isQueued(status: ExportStatus): boolean {
  return status === STATUS.queued;
}

export function isSucceeded(status: ExportStatus): boolean {
  return status === STATUS.succeeded;
}

/** Words for a status as shown and announced. */
export function statusLabel(status: ExportStatus): string {
  return status.charAt(0).toUpperCase() + status.slice(1);
}
