/** Request and response schemas of /v1/exports. */
import { Type } from "typebox";
import { ARCHIVE_KINDS, COMPRESSIONS, CSV_NEWLINES, EXPORT_STATUSES, FORMATS } from "../../domain/export.js";
import { Nullable, NullableTimestamp, noBody, responseHeader, Timestamp, withHeaders } from "../schemas.js";

export const CreateExportHeaders = Type.Object({
  "idempotency-key": Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: "^[\\x21-\\x7e]+$",
      description: "Any unique string (a UUID is fine). Kept 24 hours.",
    }),
  ),
});

const FiltersSchema = Type.Record(
  Type.String({ maxLength: 100 }),
  Type.Union([
    Type.String({ maxLength: 500 }),
    Type.Array(Type.String({ maxLength: 500 }), { minItems: 1, maxItems: 1000 }),
  ]),
  { description: "Filter name → one value or a list of values." },
);
const ColumnsSchema = Type.Array(Type.String({ maxLength: 100 }), {
  minItems: 1,
  maxItems: 200,
  description: "Columns to export, in this order. Default: every column.",
});

export const CreateExportBody = Type.Object(
  {
    dataset: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        description:
          "A dataset name from GET /v1/datasets. Exactly one of `dataset`, `datasets` and `bundle`.",
      }),
    ),
    datasets: Type.Optional(
      Type.Array(
        Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 100 }),
            filters: Type.Optional(FiltersSchema),
            columns: Type.Optional(ColumnsSchema),
          },
          { additionalProperties: false },
        ),
        {
          maxItems: 16,
          description:
            "Several datasets in one export, run in this order, sharing the range, zone and format; downloadable as one zip with a manifest.",
        },
      ),
    ),
    bundle: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        description:
          "A named set of datasets from the server's config file (e.g. `account`); may allow leaving out `from` and `to`.",
      }),
    ),
    from: Type.Optional(
      Type.String({
        maxLength: 40,
        description:
          "Start, inclusive: ISO 8601 with offset, a local date-time or a date (its first instant), read in `timezone`. Required unless the bundle allows all-time exports.",
      }),
    ),
    to: Type.Optional(
      Type.String({
        maxLength: 40,
        description: 'End, exclusive: ISO 8601 with offset, a local date-time, a date, or "now".',
      }),
    ),
    filters: Type.Optional(FiltersSchema),
    columns: Type.Optional(ColumnsSchema),
    archive: Type.Optional(
      Type.Enum(ARCHIVE_KINDS, {
        description:
          "`zip`: the export is also one zip archive of every part plus `manifest.json`. Default: `zip` with `datasets` or `bundle`, `none` with `dataset`.",
      }),
    ),
    format: Type.Optional(Type.Enum(FORMATS, { default: "csv" })),
    compression: Type.Optional(Type.Enum(COMPRESSIONS, { default: "gzip" })),
    csv: Type.Optional(
      Type.Object(
        {
          delimiter: Type.Optional(Type.String({ minLength: 1, maxLength: 1 })),
          header: Type.Optional(Type.Boolean()),
          bom: Type.Optional(Type.Boolean()),
          newline: Type.Optional(Type.Enum(CSV_NEWLINES, { description: "Row terminator. Default crlf." })),
          formula_guard: Type.Optional(
            Type.Boolean({
              description:
                "Prefix text cells starting with = + - @ tab or CR with a single quote, so spreadsheets do not run them as formulas. Default false.",
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    timezone: Type.Optional(
      Type.String({
        maxLength: 64,
        description:
          "Canonical IANA zone (or UTC) for dates and timestamps; links and abbreviations are refused. Default UTC.",
      }),
    ),
    part_max_rows: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10_000_000,
        description: "Rows per part at most. Default 1,000,000.",
      }),
    ),
    dry_run: Type.Optional(
      Type.Boolean({
        description: "Only validate and estimate: answers 200 with the estimated rows; nothing is created.",
      }),
    ),
  },
  { additionalProperties: false },
);

const PartSchema = Type.Object({
  index: Type.Integer(),
  dataset: Type.String({ description: "The dataset the part belongs to." }),
  rows: Type.Integer(),
  bytes: Type.Integer(),
  sha256: Type.String(),
  filename: Type.String(),
  url: Nullable(
    Type.String({
      description:
        "Signed download link; null unless the export succeeded and the key has the exports:download scope.",
    }),
  ),
  url_expires_at: NullableTimestamp,
});

const ManifestSchema = Type.Object(
  {
    manifest_version: Type.Integer(),
    export_id: Type.String(),
    bundle: Nullable(Type.String()),
    created_at: Timestamp,
    range: Type.Object({ from: Type.String(), to: Type.String(), all_time: Type.Boolean() }),
    timezone: Type.String(),
    format: Type.String(),
    compression: Type.String(),
    complete: Type.Boolean(),
    datasets: Type.Array(
      Type.Object({
        name: Type.String(),
        columns: Type.Array(Type.Object({ name: Type.String(), type: Nullable(Type.String()) })),
        request: Type.Object({
          filters: Type.Record(Type.String(), Type.Array(Type.String())),
          columns: Type.Array(Type.String()),
        }),
        rows: Type.Integer(),
        bytes: Type.Integer(),
        parts: Type.Array(
          Type.Object({
            index: Type.Integer(),
            path: Type.String(),
            rows: Type.Integer(),
            bytes: Type.Integer(),
            sha256: Type.String(),
            crc32: Nullable(Type.String()),
          }),
        ),
      }),
    ),
  },
  {
    description:
      "The archive's manifest.json as it stands (`complete` once succeeded); null without an archive.",
  },
);

export const ExportSchema = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    object: Type.Literal("export"),
    dataset: Type.String(),
    status: Type.Enum(EXPORT_STATUSES),
    cancellable: Type.Boolean(),
    created_at: Timestamp,
    started_at: NullableTimestamp,
    finished_at: NullableTimestamp,
    expires_at: NullableTimestamp,
    request: Type.Object({
      from: Timestamp,
      to: Type.String({ format: "date-time", description: "End, exclusive, as resolved at creation." }),
      to_requested: Nullable(
        Type.String({
          description:
            '`to` as sent: "now" when the end was the creation time, else the date or instant given. Null for exports created before it was kept.',
        }),
      ),
      filters: Type.Record(Type.String(), Type.Array(Type.String())),
      columns: Type.Array(Type.String()),
      format: Type.String(),
      compression: Type.String(),
      csv: Type.Object({
        delimiter: Type.String(),
        header: Type.Boolean(),
        bom: Type.Boolean(),
        newline: Type.String(),
        formula_guard: Type.Boolean(),
      }),
      timezone: Type.String(),
      part_max_rows: Type.Integer(),
      datasets: Type.Array(
        Type.Object({
          name: Type.String(),
          filters: Type.Record(Type.String(), Type.Array(Type.String())),
          columns: Type.Array(Type.String()),
        }),
        { description: "The export's datasets in the order they run (one for a single-dataset export)." },
      ),
      bundle: Nullable(Type.String()),
      all_time: Type.Boolean({ description: "True when no range was given (a bundle that allows it)." }),
      archive: Type.Enum(ARCHIVE_KINDS),
    }),
    progress: Type.Object({
      percent: Type.Number({
        description:
          "Share of the work done, 0–100 (datasets done plus the time range covered in the running one, over the datasets); never moves backwards.",
      }),
      rows: Type.Integer({ description: "Rows written so far, over every dataset." }),
      parts: Type.Integer(),
      estimated_rows: Nullable(Type.Integer()),
      bytes: Type.Integer({ description: "Stored bytes of the published parts." }),
      dataset: Nullable(
        Type.String({ description: "The dataset running now (several datasets only); null otherwise." }),
      ),
    }),
    attempts: Type.Integer(),
    created_by: Nullable(
      Type.String({
        description:
          "Who created the export: `key:<prefix>` (an API key), `token:<sub>` (a sign-in token's subject) or `operator:<prefix>` (an operator key acting for the tenant). Null for exports created before it was kept.",
      }),
    ),
    queue_position: Nullable(
      Type.Integer({
        description: "Place among the tenant's waiting exports (1 = next); null unless queued.",
      }),
    ),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String(), retryable: Type.Boolean() })),
    parts: Type.Array(PartSchema),
    archive: Nullable(
      Type.Object(
        {
          filename: Type.String(),
          bytes: Nullable(Type.Integer({ description: "The archive's length, once the export succeeded." })),
          url: Nullable(
            Type.String({
              description:
                "Signed link to the zip (manifest.json and every part, stored uncompressed); supports Range. Always a link to exportd's /files route, with either object store. Null until succeeded or without exports:download.",
            }),
          ),
          url_expires_at: NullableTimestamp,
        },
        { description: 'The zip archive of an export with `"archive": "zip"`; null otherwise.' },
      ),
    ),
    manifest: Nullable(ManifestSchema),
  },
  { $id: "Export" },
);

export const ExportIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export const ListExportsQuery = Type.Object(
  {
    status: Type.Optional(Type.Enum(EXPORT_STATUSES)),
    dataset: Type.Optional(Type.String({ maxLength: 100 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(
      Type.String({ maxLength: 200, description: "`next_cursor` of the previous page." }),
    ),
  },
  { additionalProperties: false },
);

export const ExportListSchema = Type.Object({
  data: Type.Array(Type.Ref("Export")),
  next_cursor: Nullable(Type.String()),
});

export const DownloadQuery = Type.Object(
  {
    part: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    archive: Type.Optional(
      Type.Literal("zip", {
        description:
          "The export's zip archive instead of a part (served by exportd's /files route with either object store).",
      }),
    ),
    redirect: Type.Optional(Type.Boolean({ default: true })),
  },
  { additionalProperties: false },
);

export const DownloadLinkSchema = Type.Object({
  part: Nullable(Type.Integer({ description: "The part's index; null for the zip archive." })),
  filename: Type.String(),
  url: Type.String(),
  expires_at: Timestamp,
});
export const DryRunSchema = Type.Object({
  object: Type.Literal("dry_run"),
  dataset: Type.String(),
  estimated_rows: Nullable(
    Type.Integer({
      description:
        "Rows the export would produce (exact for SQL datasets, modelled for the demo); null when unknown.",
    }),
  ),
  exceeds_limits: Type.Boolean({ description: "True when the estimate passes the dataset's max_rows." }),
  limits: Type.Object({ max_rows: Type.Integer(), max_bytes: Type.Integer() }),
});
const CACHE_CONTROL = responseHeader("`no-store`: the answer holds fresh signed links.");

/** The status of an export as GET /v1/exports/{id} answers it; cancel answers it without headers. */
export const StatusResponse = withHeaders(ExportSchema, { "Cache-Control": CACHE_CONTROL });
export const CancelResponse = withHeaders(ExportSchema, {});

export const CreateExportResponses = {
  200: DryRunSchema,
  202: withHeaders(ExportSchema, {
    Location: responseHeader("Where to poll the export: `/v1/exports/{id}`."),
    "Idempotent-Replayed": responseHeader(
      "`true` when the same Idempotency-Key and body already created this export, which is answered again.",
      { optional: true },
    ),
  }),
};

export const DownloadResponses = {
  200: withHeaders(DownloadLinkSchema, { "Cache-Control": CACHE_CONTROL }),
  302: noBody("To a fresh signed link, valid 20 minutes by default. The link needs no Authorization.", {
    Location: responseHeader("The signed link."),
    "Cache-Control": CACHE_CONTROL,
  }),
};

/** Headers of `GET /v1/exports/{id}/events`: a reconnecting client's last event id. */
export const EventsHeaders = Type.Object({
  "last-event-id": Type.Optional(
    Type.String({
      maxLength: 64,
      description:
        "The `id` of the last event received, sent by a reconnecting client: the current document comes first only if the export changed since.",
    }),
  ),
});

/** The progress stream: Server-Sent Events (text/event-stream), documented as text. */
export const EventsResponses = {
  200: {
    description:
      "A Server-Sent Events stream. `retry: 2000` first; `event: progress` with `id: <n>` (increasing per export) and `data:` the export document exactly as `GET /v1/exports/{id}` answers it — first the current one, then whenever status, rows, percent, parts, estimate, attempts or queue position change (at least 250 ms apart); `event: status` with the final document once the export is final, after which the server closes the stream; a `: ping` comment every 15 seconds. Reconnect with `Last-Event-ID`.",
    content: { "text/event-stream": { schema: { type: "string" } } },
    headers: { "Cache-Control": responseHeader("`no-store`.") },
  },
};
