/** Friendly names for the generated API types (generated/openapi.ts, from exportd's /openapi.json). */
import type { components, operations } from "./generated/openapi.js";

/** An export as `GET /v1/exports/{id}` answers it (also each progress event's data). */
export type Export = components["schemas"]["Export"];
/** One part of a succeeded export. */
export type ExportPart = Export["parts"][number];
/** An export's status. */
export type ExportStatus = Export["status"];
/** The body of `POST /v1/exports` (without `dry_run`: see `dryRun`). */
export type CreateExportRequest = Omit<
  operations["createExport"]["requestBody"]["content"]["application/json"],
  "dry_run"
>;
/** What `POST /v1/exports` with `"dry_run": true` answers: the estimate and the dataset's limits. */
export type DryRunResult = operations["createExport"]["responses"][200]["content"]["application/json"];
/** Filters of `GET /v1/exports` (the cursor is handled by `listExports`). */
export type ListExportsQuery = Omit<NonNullable<operations["listExports"]["parameters"]["query"]>, "cursor">;
/** One page of `GET /v1/exports`. */
export type ExportPage = operations["listExports"]["responses"][200]["content"]["application/json"];
/** `GET /v1/exports/{id}/download?redirect=false`: a fresh signed link to one part. */
export type DownloadLink = operations["downloadPart"]["responses"][200]["content"]["application/json"];
/** The error envelope of every error answer. */
export type ErrorEnvelope = components["schemas"]["Error"];

/** The statuses after which an export no longer changes (but for `succeeded` → `expired`). */
export const FINAL_STATUSES: readonly ExportStatus[] = ["succeeded", "failed", "canceled", "expired"];

/** Whether the export reached a final status. */
export function isFinal(status: ExportStatus): boolean {
  return FINAL_STATUSES.includes(status);
}
