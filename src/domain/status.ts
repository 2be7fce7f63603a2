/**
 * The names of an export's statuses, apart from the state machine (domain/export.ts) so that the
 * error catalogue can name them in details without importing the lifecycle.
 */
export const EXPORT_STATUSES = ["queued", "running", "succeeded", "failed", "canceled", "expired"] as const;
export type ExportStatus = (typeof EXPORT_STATUSES)[number];
/**
 * The statuses by name, for the status changes a use case decides (each checked with
 * `assertTransition`): code outside domain/ never spells a status.
 */
export const STATUS = {
  queued: "queued",
  running: "running",
  succeeded: "succeeded",
  failed: "failed",
  canceled: "canceled",
  expired: "expired",
} as const satisfies { [S in ExportStatus]: S };
