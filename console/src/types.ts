/**
 * The API's documents as the console reads them: the typed client's types, generated from
 * /openapi.json (clients/typescript), in one place for the console's files. Only the create body is
 * the console's own: the subset of POST /v1/exports that its form sends.
 */
import type { CreateExportRequest, ErrorEnvelope, operations } from "../../clients/typescript/src/index.js";

export type {
  DownloadLink,
  DryRunResult,
  Export,
  ExportPage,
  ExportPart,
} from "../../clients/typescript/src/index.js";

/** One dataset of `GET /v1/datasets`. */
export type Dataset =
  operations["listDatasets"]["responses"][200]["content"]["application/json"]["data"][number];

/** One bad field of an error envelope's `details`. */
export type ErrorDetail = ErrorEnvelope["error"]["details"][number];

/**
 * What POST /v1/exports gets from the console: one dataset with its range, zone and format, and the
 * filters and columns that differ from the defaults. `format` is any name the dataset lists (the
 * listing types it as a string); the API refuses one it does not know.
 */
export type CreateBody = Required<Pick<CreateExportRequest, "dataset" | "from" | "to" | "timezone">> &
  Pick<CreateExportRequest, "filters" | "columns"> & { format: string };
