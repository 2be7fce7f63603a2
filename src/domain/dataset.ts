/**
 * What a dataset offers a client — columns, filters, formats and limits — and the validation of a
 * create request against it. Pure: sources/ implement the reading, this decides what may be asked.
 */
import { AppError, type ErrorDetail, invalidRequest } from "./errors.js";
import {
  COMPRESSIONS,
  type Compression,
  CSV_NEWLINES,
  type CsvNewline,
  type ExportRequest,
  FORMATS,
  type Format,
} from "./export.js";
import { planAllows } from "./tenant.js";
import { canonicalTimeZone, parseInstant } from "./time.js";

export type ColumnType = "string" | "integer" | "number" | "boolean" | "timestamp" | "json";

export interface ColumnSpec {
  name: string;
  type: ColumnType;
  description?: string;
}

export const COLUMN_TYPES: readonly ColumnType[] = [
  "string",
  "integer",
  "number",
  "boolean",
  "timestamp",
  "json",
];

/** Columns the CSV formula guard applies to: numbers, booleans and timestamps are never formulas. */
export const FORMULA_GUARDED_TYPES: ReadonlySet<ColumnType> = new Set<ColumnType>(["string", "json"]);

export type FilterType = "string" | "integer" | "boolean";
export const FILTER_TYPES: readonly FilterType[] = ["string", "integer", "boolean"];

export interface FilterSpec {
  name: string;
  /** What a value must look like: any text, a decimal integer, or true/false. */
  type: FilterType;
  description?: string;
}

export interface DatasetLimits {
  /** Longest time range one export may cover. */
  maxRangeDays: number;
  /** An export that would produce more rows fails with too_many_rows. */
  maxRows: number;
  /** An export whose encoded data (before compression) would pass this fails with too_much_data. */
  maxBytes: number;
}

/** `plans` value meaning every plan may use the dataset. */
export { ALL_PLANS } from "./tenant.js";

export interface DatasetDescriptor {
  name: string;
  description: string;
  columns: ColumnSpec[];
  filters: FilterSpec[];
  formats: Format[];
  limits: DatasetLimits;
  /** Plans whose tenants may export this dataset; null or `["*"]`: every plan. */
  plans: string[] | null;
}

/** The create body as the HTTP schema admits it (shapes checked, meaning not yet). */
export interface CreateExportInput {
  dataset: string;
  from: string;
  to: string;
  filters?: Record<string, string | string[]>;
  columns?: string[];
  format?: Format;
  compression?: Compression;
  csv?: {
    delimiter?: string;
    header?: boolean;
    bom?: boolean;
    newline?: CsvNewline;
    formula_guard?: boolean;
  };
  timezone?: string;
  part_max_rows?: number;
  /** Only estimate; handled by the route, ignored here. */
  dry_run?: boolean;
}

const FILTER_VALUE_RULES: Record<FilterType, { valid(value: string): boolean; message: string }> = {
  // Databases store no NUL in text (PostgreSQL rejects it), so such a value could never match.
  string: { valid: (v) => !v.includes("\0"), message: "Text values may not contain NUL characters." },
  // 64-bit signed: the widest integer column either source has (PostgreSQL bigint, SQLite INTEGER).
  integer: {
    valid: (v) => /^-?\d{1,19}$/.test(v) && BigInt(v) >= -(2n ** 63n) && BigInt(v) < 2n ** 63n,
    message: "Values of this filter are decimal integers from -2^63 to 2^63-1.",
  },
  boolean: {
    valid: (v) => v === "true" || v === "false",
    message: 'Values of this filter are "true" or "false".',
  },
};

export const DEFAULT_PART_MAX_ROWS = 1_000_000;
export const MAX_FILTER_VALUES = 1000;
const CSV_DELIMITERS = [",", ";", "\t", "|"];

/**
 * Turns a create body into an ExportRequest, or throws invalid_request / invalid_date_range listing
 * every problem at once. `now` resolves `"to": "now"` and caps ranges that reach into the future.
 */
export function normalizeCreateRequest(
  input: CreateExportInput,
  datasets: ReadonlyMap<string, DatasetDescriptor>,
  now: number,
  plan: string,
): ExportRequest {
  const details: ErrorDetail[] = [];
  const dataset = datasets.get(input.dataset);
  if (dataset && !planAllows(dataset.plans, plan)) {
    throw new AppError("plan_required", `The dataset "${dataset.name}" is not part of the "${plan}" plan.`, [
      {
        field: "dataset",
        code: "not_in_plan",
        message: `Plans with ${dataset.name}: ${dataset.plans?.join(", ")}.`,
      },
    ]);
  }
  if (!dataset) {
    throw invalidRequest([
      {
        field: "dataset",
        code: "unknown_dataset",
        message: `Unknown dataset "${input.dataset}". GET /v1/datasets lists the ones this key may export.`,
      },
    ]);
  }

  const zoneName = canonicalTimeZone(input.timezone ?? "UTC");
  if (zoneName.name === null) {
    const hint = zoneName.suggestion ? ` Did you mean "${zoneName.suggestion}"?` : "";
    details.push({
      field: "timezone",
      code: "invalid",
      message: `"${input.timezone}" is not a canonical IANA time zone name (such as Europe/Berlin) or UTC; links and abbreviations are refused because databases read them differently.${hint}`,
    });
  }
  const timezone = zoneName.name ?? "UTC";

  const from = parseInstant(input.from, timezone);
  if (from === null) {
    details.push({
      field: "from",
      code: "invalid_date",
      message:
        "Expected an ISO 8601 date-time with offset (2026-11-01T00:00:00Z), a local date-time (2026-11-01T08:00) or a date (2026-11-01).",
    });
  }
  const to = input.to === "now" ? now : parseInstant(input.to, timezone);
  if (to === null) {
    details.push({
      field: "to",
      code: "invalid_date",
      message: 'Expected "now", an ISO 8601 date-time with offset, a local date-time or a date.',
    });
  }
  if (from !== null && to !== null && from >= to) {
    details.push({ field: "from", code: "empty_range", message: "`from` must be before `to`." });
  }

  const columnNames = new Set(dataset.columns.map((c) => c.name));
  const columns = input.columns ?? dataset.columns.map((c) => c.name);
  if (columns.length === 0) {
    details.push({
      field: "columns",
      code: "invalid",
      message: "Choose at least one column, or leave `columns` out.",
    });
  }
  const seen = new Set<string>();
  columns.forEach((name, i) => {
    if (!columnNames.has(name)) {
      details.push({
        field: `columns[${i}]`,
        code: "unknown_column",
        message: `Unknown column "${name}". Columns of ${dataset.name}: ${[...columnNames].join(", ")}.`,
      });
    } else if (seen.has(name)) {
      details.push({
        field: `columns[${i}]`,
        code: "duplicate_column",
        message: `Column "${name}" is listed twice.`,
      });
    }
    seen.add(name);
  });

  const filterSpecs = new Map(dataset.filters.map((f) => [f.name, f]));
  const filters: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(input.filters ?? {})) {
    const spec = filterSpecs.get(name);
    if (!spec) {
      details.push({
        field: `filters.${name}`,
        code: "unknown_filter",
        message: `Unknown filter "${name}". Filters of ${dataset.name}: ${[...filterSpecs.keys()].join(", ") || "none"}.`,
      });
      continue;
    }
    const values = Array.isArray(value) ? value : [value];
    if (values.length === 0 || values.length > MAX_FILTER_VALUES) {
      details.push({
        field: `filters.${name}`,
        code: "invalid",
        message: `Give between 1 and ${MAX_FILTER_VALUES} values.`,
      });
      continue;
    }
    const rule = FILTER_VALUE_RULES[spec.type];
    if (!values.every((v) => rule.valid(v))) {
      details.push({ field: `filters.${name}`, code: "invalid", message: rule.message });
      continue;
    }
    filters[name] = [...new Set(values)];
  }

  const format = input.format ?? "csv";
  if (!FORMATS.includes(format) || !dataset.formats.includes(format)) {
    details.push({
      field: "format",
      code: "unsupported_format",
      message: `${dataset.name} exports as ${dataset.formats.join(" or ")}.`,
    });
  }
  const compression = input.compression ?? "gzip";
  if (!COMPRESSIONS.includes(compression)) {
    details.push({ field: "compression", code: "invalid", message: `Use ${COMPRESSIONS.join(" or ")}.` });
  }

  const delimiter = input.csv?.delimiter ?? ",";
  if (!CSV_DELIMITERS.includes(delimiter)) {
    details.push({
      field: "csv.delimiter",
      code: "invalid",
      message: `Use one of ${CSV_DELIMITERS.map((d) => JSON.stringify(d)).join(", ")}.`,
    });
  }

  const newline = input.csv?.newline ?? "crlf";
  if (!CSV_NEWLINES.includes(newline)) {
    details.push({ field: "csv.newline", code: "invalid", message: `Use ${CSV_NEWLINES.join(" or ")}.` });
  }

  if (details.length) throw invalidRequest(details);

  // Both are non-null here: a null would have added a detail above.
  const range = { from: from as number, to: to as number };
  const maxRangeMs = dataset.limits.maxRangeDays * 86_400_000;
  if (range.to - range.from > maxRangeMs) {
    throw new AppError(
      "invalid_date_range",
      `${dataset.name} exports at most ${dataset.limits.maxRangeDays} days at once.`,
      [
        {
          field: "to",
          code: "range_too_long",
          message: `The range covers ${((range.to - range.from) / 86_400_000).toFixed(1)} days; the limit is ${dataset.limits.maxRangeDays}.`,
        },
      ],
    );
  }

  return {
    dataset: dataset.name,
    from: range.from,
    to: range.to,
    toRequested: input.to,
    filters,
    columns,
    format,
    compression,
    csv: {
      delimiter,
      header: input.csv?.header ?? true,
      bom: input.csv?.bom ?? false,
      newline,
      formulaGuard: input.csv?.formula_guard ?? false,
    },
    timezone,
    partMaxRows: input.part_max_rows ?? DEFAULT_PART_MAX_ROWS,
  };
}
