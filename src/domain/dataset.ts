/**
 * What a dataset offers a client — columns, filters, formats and limits — and the validation of a
 * create request against it. Pure: sources/ implement the reading, this decides what may be asked.
 */
import { AppError, type ErrorDetail, invalidRequest } from "./errors.js";
import {
  ARCHIVE_KINDS,
  type ArchiveKind,
  COMPRESSIONS,
  type Compression,
  CSV_NEWLINES,
  type CsvNewline,
  type DatasetItem,
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

/**
 * A named set of datasets the operator declares in the config file (`bundles`), exported together
 * with `"bundle": "<name>"`: e.g. `account: [users, orders, messages]`.
 */
export interface BundleDescriptor {
  name: string;
  description: string;
  datasets: string[];
  /** Whether a request may leave out `from` and `to` (an all-time export of everything). */
  allTime: boolean;
  /** Limits of the whole export (each dataset's own apply too); null: as for any list of datasets. */
  limits: { maxRows: number; maxBytes: number } | null;
}

/** One dataset of a multi-dataset create body. */
export interface DatasetSpecInput {
  name: string;
  filters?: Record<string, string | string[]>;
  columns?: string[];
}

/** The create body as the HTTP schema admits it (shapes checked, meaning not yet). */
export interface CreateExportInput {
  /** One dataset (the original shape); exactly one of `dataset`, `datasets` and `bundle`. */
  dataset?: string;
  /** Several datasets in one export, run in this order. */
  datasets?: DatasetSpecInput[];
  /** A bundle of datasets from the config file. */
  bundle?: string;
  /** Required unless the bundle allows all-time exports. */
  from?: string;
  to?: string;
  filters?: Record<string, string | string[]>;
  columns?: string[];
  format?: Format;
  compression?: Compression;
  /** `zip`: also one zip archive with a manifest. Default: zip for several datasets, none for one. */
  archive?: ArchiveKind;
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

/** Datasets one export may hold at most. */
export const MAX_DATASETS_PER_EXPORT = 16;
/**
 * `from` of an all-time export: 0001-01-01T00:00:00Z, before any time a source can hold that an
 * export should see (both sources order and compare it correctly); `to` is the creation time.
 */
export const ALL_TIME_FROM = -62_135_596_800_000;

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
 * Checks one dataset's part of a request — plan, columns, filters, format — adding what is wrong to
 * `details` under `prefix` (`""` for the single-dataset shape, `datasets[1].` for a list). Returns the
 * validated item, or null when the dataset is unknown. Throws plan_required for a dataset outside
 * the tenant's plan.
 */
function checkItem(
  spec: DatasetSpecInput,
  datasets: ReadonlyMap<string, DatasetDescriptor>,
  plan: string,
  format: Format,
  prefix: string,
  nameField: string,
  details: ErrorDetail[],
): { item: DatasetItem; descriptor: DatasetDescriptor } | null {
  const dataset = datasets.get(spec.name);
  if (dataset && !planAllows(dataset.plans, plan)) {
    throw new AppError("plan_required", `The dataset "${dataset.name}" is not part of the "${plan}" plan.`, [
      {
        field: nameField,
        code: "not_in_plan",
        message: `Plans with ${dataset.name}: ${dataset.plans?.join(", ")}.`,
      },
    ]);
  }
  if (!dataset) {
    details.push({
      field: nameField,
      code: "unknown_dataset",
      message: `Unknown dataset "${spec.name}". GET /v1/datasets lists the ones this key may export.`,
    });
    return null;
  }

  const columnTypes = new Map(dataset.columns.map((c) => [c.name, c.type]));
  const columns = spec.columns ?? dataset.columns.map((c) => c.name);
  if (columns.length === 0) {
    details.push({
      field: `${prefix}columns`,
      code: "invalid",
      message: "Choose at least one column, or leave `columns` out.",
    });
  }
  const seen = new Set<string>();
  columns.forEach((name, i) => {
    if (!columnTypes.has(name)) {
      details.push({
        field: `${prefix}columns[${i}]`,
        code: "unknown_column",
        message: `Unknown column "${name}". Columns of ${dataset.name}: ${[...columnTypes.keys()].join(", ")}.`,
      });
    } else if (seen.has(name)) {
      details.push({
        field: `${prefix}columns[${i}]`,
        code: "duplicate_column",
        message: `Column "${name}" is listed twice.`,
      });
    }
    seen.add(name);
  });

  const filterSpecs = new Map(dataset.filters.map((f) => [f.name, f]));
  const filters: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(spec.filters ?? {})) {
    const filterSpec = filterSpecs.get(name);
    if (!filterSpec) {
      details.push({
        field: `${prefix}filters.${name}`,
        code: "unknown_filter",
        message: `Unknown filter "${name}". Filters of ${dataset.name}: ${[...filterSpecs.keys()].join(", ") || "none"}.`,
      });
      continue;
    }
    const values = Array.isArray(value) ? value : [value];
    if (values.length === 0 || values.length > MAX_FILTER_VALUES) {
      details.push({
        field: `${prefix}filters.${name}`,
        code: "invalid",
        message: `Give between 1 and ${MAX_FILTER_VALUES} values.`,
      });
      continue;
    }
    const rule = FILTER_VALUE_RULES[filterSpec.type];
    if (!values.every((v) => rule.valid(v))) {
      details.push({ field: `${prefix}filters.${name}`, code: "invalid", message: rule.message });
      continue;
    }
    filters[name] = [...new Set(values)];
  }

  if (!FORMATS.includes(format) || !dataset.formats.includes(format)) {
    details.push({
      field: "format",
      code: "unsupported_format",
      message: `${dataset.name} exports as ${dataset.formats.join(" or ")}.`,
    });
  }
  const types = columns.map((name) => columnTypes.get(name) ?? "string");
  return { item: { dataset: dataset.name, filters, columns, types }, descriptor: dataset };
}

/**
 * The datasets a body asks for, with the field each one's name came from: its one `dataset`, its
 * `datasets` list or its `bundle`. Exactly one of the three; the list holds 1 to
 * MAX_DATASETS_PER_EXPORT distinct datasets.
 */
function requestedDatasets(
  input: CreateExportInput,
  bundles: ReadonlyMap<string, BundleDescriptor>,
  details: ErrorDetail[],
): {
  specs: { spec: DatasetSpecInput; prefix: string; nameField: string }[];
  bundle: BundleDescriptor | null;
  multi: boolean;
} {
  const given = (["dataset", "datasets", "bundle"] as const).filter((f) => input[f] !== undefined);
  if (given.length !== 1) {
    details.push({
      field: given[1] ?? "dataset",
      code: given.length === 0 ? "required" : "exclusive",
      message: "Give exactly one of `dataset` (one dataset), `datasets` (a list) or `bundle` (a named set).",
    });
    return { specs: [], bundle: null, multi: false };
  }
  if (input.dataset !== undefined) {
    return {
      specs: [
        {
          spec: { name: input.dataset, filters: input.filters, columns: input.columns },
          prefix: "",
          nameField: "dataset",
        },
      ],
      bundle: null,
      multi: false,
    };
  }
  if (input.filters !== undefined || input.columns !== undefined) {
    details.push({
      field: input.filters !== undefined ? "filters" : "columns",
      code: "exclusive",
      message:
        "With `datasets` or `bundle`, filters and columns go with each dataset (`datasets[i].filters`).",
    });
  }
  let specs: DatasetSpecInput[];
  let bundle: BundleDescriptor | null = null;
  if (input.bundle !== undefined) {
    bundle = bundles.get(input.bundle) ?? null;
    if (!bundle) {
      details.push({
        field: "bundle",
        code: "unknown_bundle",
        message: `Unknown bundle "${input.bundle}". Bundles: ${[...bundles.keys()].join(", ") || "none are configured"}.`,
      });
      return { specs: [], bundle: null, multi: true };
    }
    specs = bundle.datasets.map((name) => ({ name }));
  } else {
    specs = input.datasets ?? [];
  }
  if (specs.length === 0 || specs.length > MAX_DATASETS_PER_EXPORT) {
    details.push({
      field: "datasets",
      code: "too_many_datasets",
      message: `Give between 1 and ${MAX_DATASETS_PER_EXPORT} datasets.`,
    });
  }
  const names = new Set<string>();
  specs.forEach((spec, i) => {
    if (names.has(spec.name)) {
      details.push({
        field: `datasets[${i}].name`,
        code: "duplicate_dataset",
        message: `Dataset "${spec.name}" is listed twice; one export holds each dataset once.`,
      });
    }
    names.add(spec.name);
  });
  return {
    specs: specs.map((spec, i) => ({
      spec,
      prefix: bundle ? "" : `datasets[${i}].`,
      nameField: bundle ? "bundle" : `datasets[${i}].name`,
    })),
    bundle,
    multi: true,
  };
}

/**
 * Turns a create body into an ExportRequest, or throws invalid_request / invalid_date_range listing
 * every problem at once. `now` resolves `"to": "now"` and caps ranges that reach into the future.
 * Several datasets (`datasets`, `bundle`) share one range, zone and format; each is checked against
 * its own descriptor (columns, filters, format, plan, max_range_days), and the whole export gets
 * `totalLimits`: the bundle's, else the largest max_rows and max_bytes among its datasets.
 */
export function normalizeCreateRequest(
  input: CreateExportInput,
  datasets: ReadonlyMap<string, DatasetDescriptor>,
  now: number,
  plan: string,
  bundles: ReadonlyMap<string, BundleDescriptor> = new Map(),
): ExportRequest {
  const details: ErrorDetail[] = [];
  const format = input.format ?? "csv";
  const asked = requestedDatasets(input, bundles, details);
  const checked = asked.specs.map(({ spec, prefix, nameField }) =>
    checkItem(spec, datasets, plan, format, prefix, nameField, details),
  );
  if (checked.some((c) => c === null) || asked.specs.length === 0) throw invalidRequest(details);
  const items = checked as { item: DatasetItem; descriptor: DatasetDescriptor }[];
  const first = items[0] as { item: DatasetItem; descriptor: DatasetDescriptor };

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

  // No range at all: an all-time export, where the bundle allows one.
  const allTime = input.from === undefined && input.to === undefined && asked.bundle?.allTime === true;
  let from: number | null = ALL_TIME_FROM;
  let to: number | null = now;
  if (!allTime) {
    for (const field of ["from", "to"] as const) {
      if (input[field] === undefined) {
        details.push({
          field,
          code: "required",
          message: asked.bundle
            ? `The bundle ${asked.bundle.name} needs a time range (\`from\` and \`to\`).`
            : "`from` and `to` are required.",
        });
      }
    }
    from = input.from === undefined ? null : parseInstant(input.from, timezone);
    if (from === null && input.from !== undefined) {
      details.push({
        field: "from",
        code: "invalid_date",
        message:
          "Expected an ISO 8601 date-time with offset (2026-11-01T00:00:00Z), a local date-time (2026-11-01T08:00) or a date (2026-11-01).",
      });
    }
    to = input.to === undefined ? null : input.to === "now" ? now : parseInstant(input.to, timezone);
    if (to === null && input.to !== undefined) {
      details.push({
        field: "to",
        code: "invalid_date",
        message: 'Expected "now", an ISO 8601 date-time with offset, a local date-time or a date.',
      });
    }
    if (from !== null && to !== null && from >= to) {
      details.push({ field: "from", code: "empty_range", message: "`from` must be before `to`." });
    }
  }

  const compression = input.compression ?? "gzip";
  if (!COMPRESSIONS.includes(compression)) {
    details.push({ field: "compression", code: "invalid", message: `Use ${COMPRESSIONS.join(" or ")}.` });
  }
  const archive = input.archive ?? (asked.multi ? "zip" : "none");
  if (!ARCHIVE_KINDS.includes(archive)) {
    details.push({ field: "archive", code: "invalid", message: `Use ${ARCHIVE_KINDS.join(" or ")}.` });
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
  if (!allTime) {
    for (const { descriptor } of items) {
      const maxRangeMs = descriptor.limits.maxRangeDays * 86_400_000;
      if (range.to - range.from > maxRangeMs) {
        throw new AppError(
          "invalid_date_range",
          `${descriptor.name} exports at most ${descriptor.limits.maxRangeDays} days at once.`,
          [
            {
              field: "to",
              code: "range_too_long",
              message: `The range covers ${((range.to - range.from) / 86_400_000).toFixed(1)} days; the limit is ${descriptor.limits.maxRangeDays}.`,
            },
          ],
        );
      }
    }
  }

  const request: ExportRequest = {
    dataset: first.item.dataset,
    from: range.from,
    to: range.to,
    toRequested: allTime ? "now" : input.to,
    filters: first.item.filters,
    columns: first.item.columns,
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
    items: items.map((i) => i.item),
    archive,
  };
  if (asked.bundle) request.bundle = asked.bundle.name;
  if (allTime) request.allTime = true;
  if (asked.multi) {
    request.totalLimits = asked.bundle?.limits ?? {
      maxRows: Math.max(...items.map((i) => i.descriptor.limits.maxRows)),
      maxBytes: Math.max(...items.map((i) => i.descriptor.limits.maxBytes)),
    };
  }
  return request;
}
