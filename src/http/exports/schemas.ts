/** Request and response schemas of /v1/exports. */
import { Type } from "typebox";
import { COMPRESSIONS, CSV_NEWLINES, EXPORT_STATUSES, FORMATS } from "../../domain/export.js";
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

export const CreateExportBody = Type.Object(
  {
    dataset: Type.String({
      minLength: 1,
      maxLength: 100,
      description: "A dataset name from GET /v1/datasets.",
    }),
    from: Type.String({
      maxLength: 40,
      description:
        "Start, inclusive: ISO 8601 with offset, a local date-time or a date (its first instant), read in `timezone`.",
    }),
    to: Type.String({
      maxLength: 40,
      description: 'End, exclusive: ISO 8601 with offset, a local date-time, a date, or "now".',
    }),
    filters: Type.Optional(
      Type.Record(
        Type.String({ maxLength: 100 }),
        Type.Union([
          Type.String({ maxLength: 500 }),
          Type.Array(Type.String({ maxLength: 500 }), { minItems: 1, maxItems: 1000 }),
        ]),
        { description: "Filter name → one value or a list of values." },
      ),
    ),
    columns: Type.Optional(
      Type.Array(Type.String({ maxLength: 100 }), {
        minItems: 1,
        maxItems: 200,
        description: "Columns to export, in this order. Default: every column.",
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
    }),
    progress: Type.Object({
      percent: Type.Number({ description: "Share of the time range covered, 0–100; never moves backwards." }),
      rows: Type.Integer(),
      parts: Type.Integer(),
      estimated_rows: Nullable(Type.Integer()),
    }),
    attempts: Type.Integer(),
    queue_position: Nullable(
      Type.Integer({
        description: "Place among the tenant's waiting exports (1 = next); null unless queued.",
      }),
    ),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String(), retryable: Type.Boolean() })),
    parts: Type.Array(PartSchema),
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
    redirect: Type.Optional(Type.Boolean({ default: true })),
  },
  { additionalProperties: false },
);

export const DownloadLinkSchema = Type.Object({
  part: Type.Integer(),
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
