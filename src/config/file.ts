/**
 * The config file (`EXPORTD_CONFIG`, YAML or JSON): the operator's data sources and datasets. Read
 * and validated once at start; every problem is reported with the path of the bad key, e.g.
 * `datasets.orders.columns[2].type: must be one of string, integer, …`, and all of them at once.
 */
import fs from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import {
  ALL_PLANS,
  type BundleDescriptor,
  COLUMN_TYPES,
  type ColumnType,
  FILTER_TYPES,
  type FilterType,
  MAX_DATASETS_PER_EXPORT,
} from "../domain/dataset.js";
import { FORMATS, type Format } from "../domain/export.js";
import { canonicalTimeZone } from "../domain/time.js";
import { DEFAULT_EVENT_TYPES, EXPORT_EVENT_TYPES, type ExportEventType } from "../domain/webhooks.js";
import type { TokenSettingsInput } from "./tokens.js";

export interface PostgresSourceConfig {
  type: "postgres";
  url: string;
  /** Pool size: exports and estimates running at once on this source. */
  maxConnections: number;
}

export interface SqliteSourceConfig {
  type: "sqlite";
  /** Absolute path (relative paths in the file are resolved against the file's folder). */
  file: string;
}

export type SourceConfig = PostgresSourceConfig | SqliteSourceConfig;

export interface DatasetColumnConfig {
  /** Name in the export (and in requests). */
  name: string;
  /** Column (or view column) in the source. */
  column: string;
  type: ColumnType;
  description: string;
}

export interface DatasetFilterConfig {
  name: string;
  column: string;
  type: FilterType;
  description: string;
}

export const KEY_TYPES = ["integer", "string"] as const;
export type KeyType = (typeof KEY_TYPES)[number];

export interface DatasetConfig {
  name: string;
  source: string;
  description: string;
  /** Table or view, optionally schema-qualified (`schema.table`). */
  table: string;
  tenantColumn: string;
  timeColumn: string;
  /** With the time column, a unique and stable order: the resume cursor is (time, key). */
  keyColumn: string;
  keyType: KeyType;
  /**
   * The zone whose wall-clock times the source's zone-less times are: PostgreSQL `timestamp without
   * time zone` and `date` columns, SQLite timestamps stored as text without an offset. Default UTC.
   */
  localTimeZone: string;
  columns: DatasetColumnConfig[];
  filters: DatasetFilterConfig[];
  formats: Format[];
  limits: { maxRangeDays: number; maxRows: number; maxBytes: number };
  plans: string[];
}

export interface DatasetsConfig {
  /** Whether the built-in demo dataset `events` is served. */
  demo: boolean;
  sources: Record<string, SourceConfig>;
  datasets: DatasetConfig[];
  /**
   * The file's `tokens:` section (the product's own JWTs), as given: config/tokens.ts merges it with
   * `EXPORTD_JWT_*` and checks it. Null: no section.
   */
  tokens: TokenSettingsInput | null;
  /** Product-wide webhook endpoints the operator declares (`webhooks:` in the file). */
  webhooks: ConfigWebhookEndpoint[];
  /** Named sets of datasets exported together (`"bundle": "account"`); absent when none. */
  bundles?: BundleDescriptor[];
}

export const NO_CONFIG_FILE: DatasetsConfig = {
  demo: true,
  sources: {},
  datasets: [],
  tokens: null,
  webhooks: [],
};

/**
 * A product-wide webhook endpoint declared in the config file (or the EXPORTD_WEBHOOK_URL
 * variables): it receives every tenant's events of the listed types, signed with `secret`.
 */
export interface ConfigWebhookEndpoint {
  name: string;
  url: string;
  events: ExportEventType[];
  description: string;
  /** `whsec_` and base64: the secret the receiver verifies with. */
  secret: string;
}

/** A Standard Webhooks secret: `whsec_` and at least 24 bytes in base64. */
export const WEBHOOK_SECRET = /^whsec_[A-Za-z0-9+/]{32,}={0,2}$/;

export const DEFAULT_LIMITS = { maxRangeDays: 366, maxRows: 10_000_000, maxBytes: 10 * 1024 ** 3 };

/** SQL identifiers exportd accepts: plain names, so quoting them can never be subverted. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const NAME = /^[a-z][a-z0-9_]{0,62}$/;

export class ConfigFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}:\n  ${problems.join("\n  ")}`);
    this.name = "ConfigFileError";
  }
}

type Obj = Record<string, unknown>;

/** Collects problems with their key paths; the readers return a fallback so checking goes on. */
class Checker {
  readonly problems: string[] = [];

  fail(at: string, message: string): void {
    this.problems.push(`${at}: ${message}`);
  }

  /** An object with only these keys (null: any key). */
  object(value: unknown, at: string, keys: readonly string[] | null): Obj | null {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.fail(at, "must be an object");
      return null;
    }
    for (const key of Object.keys(value)) {
      if (keys && !keys.includes(key)) this.fail(join(at, key), `unknown key (known: ${keys.join(", ")})`);
    }
    return value as Obj;
  }

  string(o: Obj, key: string, at: string, rule?: { pattern: RegExp; hint: string }, fallback?: string) {
    const value = o[key];
    const here = join(at, key);
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== "string" || value === "") {
      this.fail(here, value === undefined ? "is required" : "must be a non-empty string");
      return "";
    }
    if (rule && !rule.pattern.test(value)) this.fail(here, rule.hint);
    return value;
  }

  oneOf<T extends string>(o: Obj, key: string, at: string, allowed: readonly T[], fallback?: T): T {
    const value = o[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (!(allowed as readonly unknown[]).includes(value)) {
      this.fail(join(at, key), `must be one of ${allowed.join(", ")}`);
      return allowed[0] as T;
    }
    return value as T;
  }

  integer(o: Obj, key: string, at: string, min: number, max: number, fallback: number): number {
    const value = o[key];
    if (value === undefined) return fallback;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      this.fail(join(at, key), `must be an integer between ${min} and ${max}`);
      return fallback;
    }
    return value;
  }

  list(o: Obj, key: string, at: string, fallback?: unknown[]): unknown[] {
    const value = o[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (!Array.isArray(value) || value.length === 0) {
      this.fail(join(at, key), value === undefined ? "is required" : "must be a non-empty list");
      return [];
    }
    return value;
  }
}

function join(at: string, key: string): string {
  return at ? `${at}.${key}` : key;
}

const identifier = { pattern: IDENTIFIER, hint: "must be a plain SQL identifier (letters, digits, _)" };
const tableName = {
  pattern: new RegExp(`^(${IDENTIFIER.source.slice(1, -1)}\\.)?${IDENTIFIER.source.slice(1, -1)}$`),
  hint: "must be a table or view name, optionally schema-qualified (schema.table), of plain identifiers",
};
const datasetName = {
  pattern: NAME,
  hint: "must be lowercase letters, digits and _, starting with a letter",
};

function checkSource(c: Checker, value: unknown, at: string, baseDir: string): SourceConfig | null {
  const o = c.object(value, at, ["type", "url", "file", "max_connections"]);
  if (!o) return null;
  const type = c.oneOf(o, "type", at, ["postgres", "sqlite"] as const);
  if (type === "postgres") {
    const url = c.string(o, "url", at, {
      pattern: /^postgres(ql)?:\/\//,
      hint: "must be a postgres:// or postgresql:// URL",
    });
    return { type, url, maxConnections: c.integer(o, "max_connections", at, 1, 100, 4) };
  }
  return { type, file: path.resolve(baseDir, c.string(o, "file", at)) };
}

function checkTimeZone(c: Checker, o: Obj, at: string): string {
  const zone = c.string(o, "local_time_zone", at, undefined, "UTC");
  const canonical = canonicalTimeZone(zone);
  if (canonical.name === null) {
    c.fail(
      join(at, "local_time_zone"),
      `must be a canonical IANA time zone name or UTC${canonical.suggestion ? ` (did you mean ${canonical.suggestion}?)` : ""}`,
    );
  }
  return canonical.name ?? "UTC";
}

function checkDataset(
  c: Checker,
  name: string,
  value: unknown,
  at: string,
  sources: Record<string, SourceConfig>,
): DatasetConfig | null {
  const o = c.object(value, at, [
    "source",
    "description",
    "table",
    "tenant_column",
    "time_column",
    "key_column",
    "key_type",
    "local_time_zone",
    "columns",
    "filters",
    "formats",
    "limits",
    "plans",
  ]);
  if (!o) return null;
  const source = c.string(o, "source", at);
  if (source && !sources[source]) {
    c.fail(
      join(at, "source"),
      `no source "${source}" in sources (known: ${Object.keys(sources).join(", ")})`,
    );
  }

  const columns = c.list(o, "columns", at).map((item, i): DatasetColumnConfig => {
    const here = `${at}.columns[${i}]`;
    const col = c.object(item, here, ["name", "column", "type", "description"]) ?? {};
    const exported = c.string(col, "name", here, identifier);
    return {
      name: exported,
      column: c.string(col, "column", here, identifier, exported),
      type: c.oneOf(col, "type", here, COLUMN_TYPES),
      description: c.string(col, "description", here, undefined, ""),
    };
  });
  columns.forEach((col, i) => {
    if (columns.findIndex((other) => other.name === col.name) !== i) {
      c.fail(`${at}.columns[${i}].name`, `"${col.name}" is listed twice`);
    }
  });

  const filtersObj = o.filters === undefined ? {} : (c.object(o.filters, join(at, "filters"), null) ?? {});
  const filters = Object.entries(filtersObj).map(([filterName, item]): DatasetFilterConfig => {
    const here = `${at}.filters.${filterName}`;
    if (!IDENTIFIER.test(filterName)) c.fail(here, identifier.hint);
    const f = c.object(item, here, ["column", "type", "description"]) ?? {};
    return {
      name: filterName,
      column: c.string(f, "column", here, identifier, filterName),
      type: c.oneOf(f, "type", here, FILTER_TYPES, "string"),
      description: c.string(f, "description", here, undefined, ""),
    };
  });

  const formats = c.list(o, "formats", at, [...FORMATS]).map((f, i) => {
    if (!(FORMATS as readonly unknown[]).includes(f))
      c.fail(`${at}.formats[${i}]`, `must be one of ${FORMATS.join(", ")}`);
    return f as Format;
  });
  const limitsAt = join(at, "limits");
  const l =
    o.limits === undefined
      ? {}
      : (c.object(o.limits, limitsAt, ["max_range_days", "max_rows", "max_bytes"]) ?? {});
  const plans = c.list(o, "plans", at, [ALL_PLANS]).map((p, i) => {
    if (typeof p !== "string" || p === "") c.fail(`${at}.plans[${i}]`, "must be a plan name");
    return String(p);
  });

  return {
    name,
    source,
    description: c.string(o, "description", at, undefined, ""),
    table: c.string(o, "table", at, tableName),
    tenantColumn: c.string(o, "tenant_column", at, identifier),
    timeColumn: c.string(o, "time_column", at, identifier),
    keyColumn: c.string(o, "key_column", at, identifier),
    keyType: c.oneOf(o, "key_type", at, KEY_TYPES, "integer"),
    localTimeZone: checkTimeZone(c, o, at),
    columns,
    filters,
    formats,
    limits: {
      maxRangeDays: c.integer(l, "max_range_days", limitsAt, 1, 36_600, DEFAULT_LIMITS.maxRangeDays),
      maxRows: c.integer(l, "max_rows", limitsAt, 1, Number.MAX_SAFE_INTEGER, DEFAULT_LIMITS.maxRows),
      maxBytes: c.integer(l, "max_bytes", limitsAt, 1, Number.MAX_SAFE_INTEGER, DEFAULT_LIMITS.maxBytes),
    },
    plans,
  };
}

/** The `tokens:` section's keys and the setting each one gives. */
export const TOKEN_FILE_KEYS: Record<string, keyof TokenSettingsInput> = {
  jwks_url: "jwksUrl",
  public_key: "publicKey",
  hs256_secret: "hs256Secret",
  issuer: "issuer",
  audience: "audience",
  algorithms: "algorithms",
  clock_tolerance_seconds: "clockToleranceSeconds",
  max_bytes: "maxBytes",
  tenant_claim: "tenantClaim",
  scope_claim: "scopeClaim",
  scope_map: "scopeMap",
  create_tenants: "createTenants",
  cache_seconds: "cacheSeconds",
  jwks_max_age_seconds: "jwksMaxAgeSeconds",
  jwks_cooldown_seconds: "jwksCooldownSeconds",
};

/** Reads the `tokens:` section's shapes; the values' rules are checked by config/tokens.ts. */
function checkTokens(c: Checker, value: unknown): TokenSettingsInput | null {
  const o = c.object(value, "tokens", Object.keys(TOKEN_FILE_KEYS));
  if (!o) return null;
  const input: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(TOKEN_FILE_KEYS)) {
    const v = o[key];
    if (v === undefined) continue;
    const at = `tokens.${key}`;
    if (key === "algorithms") {
      if (!Array.isArray(v) || !v.every((a) => typeof a === "string")) c.fail(at, "must be a list of names");
      else input[setting] = v;
    } else if (key === "scope_map") {
      const map = c.object(v, at, null);
      if (!map) continue;
      const out: Record<string, string[]> = {};
      for (const [theirs, ours] of Object.entries(map)) {
        const list = typeof ours === "string" ? [ours] : ours;
        if (!Array.isArray(list) || !list.every((s) => typeof s === "string"))
          c.fail(`${at}.${theirs}`, "must be an exportd scope or a list of them");
        else out[theirs] = list;
      }
      input[setting] = out;
    } else if (key === "create_tenants") {
      if (typeof v !== "boolean") c.fail(at, "must be true or false");
      else input[setting] = v;
    } else if (key.endsWith("_seconds") || key === "max_bytes") {
      if (typeof v !== "number") c.fail(at, "must be a number");
      else input[setting] = v;
    } else if (typeof v !== "string" || v === "") c.fail(at, "must be a non-empty string");
    else input[setting] = v;
  }
  return input as TokenSettingsInput;
}

/** A bundle: `{datasets: [a, b], all_time: false, description, limits: {max_rows, max_bytes}}`. */
function checkBundle(
  c: Checker,
  name: string,
  value: unknown,
  at: string,
  known: ReadonlySet<string>,
): BundleDescriptor | null {
  const o = c.object(value, at, ["datasets", "all_time", "description", "limits"]);
  if (!o) return null;
  const datasets = c.list(o, "datasets", at).map((d, i) => {
    const here = `${at}.datasets[${i}]`;
    if (typeof d !== "string" || !known.has(d))
      c.fail(here, `must name a dataset (known: ${[...known].join(", ")})`);
    return String(d);
  });
  datasets.forEach((d, i) => {
    if (datasets.indexOf(d) !== i) c.fail(`${at}.datasets[${i}]`, `"${d}" is listed twice`);
  });
  if (datasets.length > MAX_DATASETS_PER_EXPORT)
    c.fail(join(at, "datasets"), `may list at most ${MAX_DATASETS_PER_EXPORT} datasets`);
  const allTime = o.all_time ?? false;
  if (typeof allTime !== "boolean") c.fail(join(at, "all_time"), "must be true or false");
  const limitsAt = join(at, "limits");
  const l = o.limits === undefined ? null : c.object(o.limits, limitsAt, ["max_rows", "max_bytes"]);
  return {
    name,
    description: c.string(o, "description", at, undefined, ""),
    datasets,
    allTime: allTime === true,
    limits: l
      ? {
          maxRows: c.integer(l, "max_rows", limitsAt, 1, Number.MAX_SAFE_INTEGER, DEFAULT_LIMITS.maxRows),
          maxBytes: c.integer(l, "max_bytes", limitsAt, 1, Number.MAX_SAFE_INTEGER, DEFAULT_LIMITS.maxBytes),
        }
      : null,
  };
}

function checkWebhook(c: Checker, name: string, value: unknown, at: string): ConfigWebhookEndpoint | null {
  const o = c.object(value, at, ["url", "events", "description", "secret"]);
  if (!o) return null;
  const url = c.string(o, "url", at, {
    pattern: /^https?:\/\//,
    hint: "must be an https:// (or http://) URL",
  });
  const events = c.list(o, "events", at, [...DEFAULT_EVENT_TYPES]);
  events.forEach((e, i) => {
    if (!(EXPORT_EVENT_TYPES as readonly unknown[]).includes(e))
      c.fail(`${at}.events[${i}]`, `must be one of ${EXPORT_EVENT_TYPES.join(", ")}`);
  });
  const secret = c.string(o, "secret", at, {
    pattern: WEBHOOK_SECRET,
    hint: "must be a Standard Webhooks secret: whsec_ and at least 24 bytes in base64",
  });
  const description = typeof o.description === "string" ? o.description : "";
  return { name, url, events: events as ExportEventType[], description, secret };
}

/** Validates a parsed config document. Throws ConfigFileError listing every problem. */
export function checkDatasetsConfig(doc: unknown, file: string, baseDir: string): DatasetsConfig {
  const c = new Checker();
  const root =
    c.object(doc ?? {}, "", ["demo", "sources", "datasets", "tokens", "bundles", "webhooks"]) ?? {};
  const demo = root.demo ?? true;
  if (typeof demo !== "boolean") c.fail("demo", "must be true or false");

  const sources: Record<string, SourceConfig> = {};
  const sourcesObj = root.sources === undefined ? {} : root.sources;
  if (typeof sourcesObj !== "object" || sourcesObj === null || Array.isArray(sourcesObj)) {
    c.fail("sources", "must be an object of source name → source");
  } else {
    for (const [name, value] of Object.entries(sourcesObj)) {
      if (!NAME.test(name)) c.fail(`sources.${name}`, datasetName.hint);
      const source = checkSource(c, value, `sources.${name}`, baseDir);
      if (source) sources[name] = source;
    }
  }

  const datasets: DatasetConfig[] = [];
  const datasetsObj = root.datasets === undefined ? {} : root.datasets;
  if (typeof datasetsObj !== "object" || datasetsObj === null || Array.isArray(datasetsObj)) {
    c.fail("datasets", "must be an object of dataset name → dataset");
  } else {
    for (const [name, value] of Object.entries(datasetsObj)) {
      if (!NAME.test(name)) c.fail(`datasets.${name}`, datasetName.hint);
      if (name === "events" && demo !== false) {
        c.fail(`datasets.${name}`, 'is the demo dataset\'s name; set "demo: false" to use it');
      }
      const dataset = checkDataset(c, name, value, `datasets.${name}`, sources);
      if (dataset) datasets.push(dataset);
    }
  }

  const bundles: BundleDescriptor[] = [];
  const bundlesObj = root.bundles === undefined ? {} : root.bundles;
  if (typeof bundlesObj !== "object" || bundlesObj === null || Array.isArray(bundlesObj)) {
    c.fail("bundles", "must be an object of bundle name → bundle");
  } else {
    const known = new Set([...datasets.map((d) => d.name), ...(demo !== false ? ["events"] : [])]);
    for (const [name, value] of Object.entries(bundlesObj)) {
      const at = `bundles.${name}`;
      if (!NAME.test(name)) c.fail(at, datasetName.hint);
      const bundle = checkBundle(c, name, value, at, known);
      if (bundle) bundles.push(bundle);
    }
  }

  const webhooks: ConfigWebhookEndpoint[] = [];
  const webhooksObj = root.webhooks === undefined ? {} : root.webhooks;
  if (typeof webhooksObj !== "object" || webhooksObj === null || Array.isArray(webhooksObj)) {
    c.fail("webhooks", "must be an object of endpoint name → endpoint");
  } else {
    for (const [name, value] of Object.entries(webhooksObj)) {
      if (!NAME.test(name)) c.fail(`webhooks.${name}`, datasetName.hint);
      const endpoint = checkWebhook(c, name, value, `webhooks.${name}`);
      if (endpoint) webhooks.push(endpoint);
    }
  }

  const tokens = root.tokens === undefined ? null : checkTokens(c, root.tokens);
  if (c.problems.length) throw new ConfigFileError(file, c.problems);
  return {
    demo: demo !== false,
    sources,
    datasets,
    tokens,
    webhooks,
    ...(bundles.length ? { bundles } : {}),
  };
}

/** Reads and validates the config file: JSON when it ends in .json, YAML otherwise. */
export function readDatasetsConfig(file: string): DatasetsConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigFileError(file, [`cannot be read: ${(err as Error).message}`]);
  }
  let doc: unknown;
  try {
    doc = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigFileError(file, [
      `is not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${(err as Error).message}`,
    ]);
  }
  return checkDatasetsConfig(doc, file, path.dirname(file));
}
