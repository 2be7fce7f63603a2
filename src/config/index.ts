/**
 * The one configuration object, read from the environment once at start and passed down.
 * No other module reads process.env. A bad value stops the start with a message naming the variable.
 */
import path from "node:path";
import { type Network, parseNetwork } from "../domain/ip-address.js";
import { DEFAULT_EVENT_TYPES, type ExportEventType, isExportEventType } from "../domain/webhooks.js";
import {
  ConfigFileError,
  type ConfigWebhookEndpoint,
  type DatasetsConfig,
  NO_CONFIG_FILE,
  readDatasetsConfig,
  TOKEN_FILE_KEYS,
  WEBHOOK_SECRET,
} from "./file.js";
import { resolveTokenSettings, type TokenSettings } from "./tokens.js";

export type { ConfigWebhookEndpoint, DatasetConfig, DatasetsConfig, SourceConfig } from "./file.js";
export type { TokenSettings } from "./tokens.js";

/** Webhook delivery settings (docs/configuration.md, docs/webhooks.md). */
export interface WebhookSettings {
  /** One POST, connect to last byte read, in milliseconds (10 s by default). */
  timeoutMs: number;
  /** Whether endpoint URLs may use plain http (https only by default). */
  allowHttp: boolean;
  /** Networks a webhook may reach although they are private, loopback, link-local… (CIDR). */
  allowedNetworks: Network[];
  /** Key material sealing endpoint secrets at rest; null: generated once in the data folder. */
  secretsKey: string | null;
  /** Multiplies the retry schedule (1 in production; tests shrink it). */
  retryScale: number;
  /** An endpoint whose every attempt failed for this long is disabled (milliseconds). */
  disableAfterMs: number;
  /** Deliveries in flight at once per worker process; 0: this process delivers none. */
  concurrency: number;
  /** Finished deliveries, their attempts and events are forgotten after this (milliseconds). */
  keepMs: number;
  /** Product-wide endpoints from the config file and EXPORTD_WEBHOOK_URL. */
  endpoints: ConfigWebhookEndpoint[];
}

export type Role = "api" | "worker" | "all";

export interface S3Settings {
  bucket: string;
  region: string;
  /** For S3-compatible servers; null: AWS. */
  endpoint: string | null;
  forcePathStyle: boolean;
  /** Null: the AWS SDK's default credential chain (environment, profile, instance role). */
  accessKeyId: string | null;
  secretAccessKey: string | null;
  /**
   * How long an S3 request's socket may go without a byte either way before the request fails
   * (then retried like any network error); also the connect timeout's bound. Milliseconds.
   */
  idleTimeoutMs: number;
}

export interface Config {
  port: number;
  host: string;
  /** Base of the links exportd hands out (signed file links, Location headers). */
  publicUrl: string;
  dataDir: string;
  /** SQLite metadata file (the embedded default). */
  databaseFile: string;
  /** PostgreSQL metadata store; when set, it replaces the SQLite file. */
  databaseUrl: string | null;
  /** Root of the local object store. */
  objectsDir: string;
  /** Where parts are stored: the local folder (links served by exportd) or S3 (presigned links). */
  storage: { kind: "local" } | ({ kind: "s3" } & S3Settings);
  /** HMAC secret for signed links; null → generated once and kept in the data folder. */
  signingSecret: string | null;
  linkTtlSeconds: number;
  retentionDays: number;
  /** Request metadata of an export is forgotten this long after creation. */
  forgetAfterDays: number;
  role: Role;
  worker: {
    concurrency: number;
    leaseMs: number;
    heartbeatMs: number;
    pollMs: number;
    maxAttempts: number;
    /** Takeovers in a row (the worker died, no part published since) before the export fails. */
    maxTakeovers: number;
    retryBaseMs: number;
    /**
     * How long a run rides out a failing object store (back-off and jitter, restarting the part from
     * the last checkpoint) before the attempt fails with storage_error. Reset by each published part.
     */
    storageRetryMs: number;
    /**
     * How long a source read may deliver nothing before the run aborts it as a source that is away
     * (retried within the storageRetryMs budget from the last published part).
     */
    sourceStallMs: number;
    /** On SIGTERM, how long running exports may take to finish their current part. */
    shutdownGraceMs: number;
  };
  sweepIntervalMs: number;
  gzipLevel: number;
  bodyLimitBytes: number;
  /** A request's headers and body must arrive within this (headers alone: at most 10 s). */
  requestTimeoutMs: number;
  /** Downloads of /files: how many bodies are written at once, their shared buffer budget, and
   * how long a client may take no bytes before its connection is closed. */
  downloads: { maxInFlight: number; bufferBudgetBytes: number; stallTimeoutMs: number };
  /**
   * Progress streams (`GET /v1/exports/{id}/events`): how many one API process holds open at once
   * (past it, 503 `too_many_event_streams`), and how often (ms) it reads the store for all of them
   * (one query per tick), and how often (ms) each gets a `: ping` comment.
   */
  eventStreams: { max: number; pollMs: number; heartbeatMs: number };
  /** Requests with a missing or invalid key a client address may send per minute (per process). */
  unauthenticatedPerMinute: number;
  logLevel: string;
  /** Redis for state shared by every API process (rate-limit counters); null: kept in process. */
  redisUrl: string | null;
  /**
   * /readyz answers 503 when the data folder's disk (SQLite file, local object store) has fewer
   * free bytes than this.
   */
  minFreeBytes: number;
  /** Maintenance forced on by configuration (the CLI can also switch it on at run time). */
  maintenance: { enabled: boolean; retryAfterSeconds: number };
  /** Sources and datasets from the EXPORTD_CONFIG file; without one, only the demo dataset. */
  datasets: DatasetsConfig;
  /** The product's own sign-in tokens (JWT), from EXPORTD_JWT_* or the file's `tokens:`; null: keys only. */
  tokens: TokenSettings | null;
  /**
   * Origins (scheme://host[:port]) a browser page may call the public API from (CORS); ["*"]: any.
   * Null: CORS off.
   */
  corsOrigins: string[] | null;
  /**
   * The operator API (/admin/v1): the bootstrap token (EXPORTD_ADMIN_TOKEN, full operator scopes;
   * null: only operator keys) and the port of its own listener (EXPORTD_ADMIN_PORT; null: served on
   * `port` beside the public API).
   */
  admin: { token: string | null; port: number | null; host: string };
  webhooks: WebhookSettings;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got "${raw}".`);
  }
  return value;
}

function num(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a number between ${min} and ${max}, got "${raw}".`);
  }
  return value;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (["1", "true", "yes", "on"].includes(raw.toLowerCase())) return true;
  if (["0", "false", "no", "off"].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${name} must be true or false, got "${raw}".`);
}

function url(env: Env, name: string, protocols: string[]): string | null {
  const raw = env[name];
  if (raw === undefined || raw === "") return null;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL, got "${raw}".`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${name} must start with ${protocols.map((p) => `${p}//`).join(" or ")}.`);
  }
  return raw;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}".`);
  }
  return raw as T;
}

function storageConfig(env: Env): Config["storage"] {
  const kind = oneOf(env, "EXPORTD_STORAGE", ["local", "s3"] as const, "local");
  if (kind === "local") return { kind };
  const bucket = env.EXPORTD_S3_BUCKET;
  if (!bucket) throw new ConfigError("EXPORTD_S3_BUCKET is required when EXPORTD_STORAGE=s3.");
  const accessKeyId = env.EXPORTD_S3_ACCESS_KEY_ID || null;
  const secretAccessKey = env.EXPORTD_S3_SECRET_ACCESS_KEY || null;
  if ((accessKeyId === null) !== (secretAccessKey === null)) {
    throw new ConfigError("Set both EXPORTD_S3_ACCESS_KEY_ID and EXPORTD_S3_SECRET_ACCESS_KEY, or neither.");
  }
  return {
    kind,
    bucket,
    region: env.EXPORTD_S3_REGION || "us-east-1",
    endpoint: url(env, "EXPORTD_S3_ENDPOINT", ["http:", "https:"]),
    forcePathStyle: bool(env, "EXPORTD_S3_FORCE_PATH_STYLE", false),
    accessKeyId,
    secretAccessKey,
    idleTimeoutMs: Math.round(num(env, "EXPORTD_S3_IDLE_TIMEOUT_SECONDS", 30, 0.1, 3600) * 1000),
  };
}

function datasetsConfig(env: Env, cwd: string): DatasetsConfig {
  if (!env.EXPORTD_CONFIG) return NO_CONFIG_FILE;
  try {
    return readDatasetsConfig(path.resolve(cwd, env.EXPORTD_CONFIG));
  } catch (err) {
    if (err instanceof ConfigFileError) throw new ConfigError(`EXPORTD_CONFIG ${err.message}`);
    throw err;
  }
}

/** EXPORTD_CORS_ORIGINS: comma-separated origins, or "*". */
function corsOrigins(env: Env): string[] | null {
  const raw = env.EXPORTD_CORS_ORIGINS;
  if (raw === undefined || raw.trim() === "") return null;
  const origins = raw
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean);
  if (origins.includes("*")) {
    if (origins.length > 1) throw new ConfigError('EXPORTD_CORS_ORIGINS is either "*" or a list of origins.');
    return origins;
  }
  for (const origin of origins) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(origin);
    } catch {}
    // An origin is exactly what a browser sends: scheme, host and a port only when not the default.
    if (!parsed || !["http:", "https:"].includes(parsed.protocol) || parsed.origin !== origin) {
      throw new ConfigError(
        `EXPORTD_CORS_ORIGINS: "${origin}" is no origin (like https://app.example.com, without a path or a trailing slash).`,
      );
    }
  }
  return origins;
}

function networks(env: Env, name: string): Network[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return [];
  return raw.split(",").map((text) => {
    const network = parseNetwork(text);
    if (!network)
      throw new ConfigError(`${name} must be a comma-separated list of CIDR networks, got "${text}".`);
    return network;
  });
}

/** The product-wide endpoint of EXPORTD_WEBHOOK_URL / _SECRET / _EVENTS, named `env`, if set. */
function envWebhook(env: Env): ConfigWebhookEndpoint[] {
  const endpointUrl = url(env, "EXPORTD_WEBHOOK_URL", ["https:", "http:"]);
  if (endpointUrl === null) return [];
  const secret = env.EXPORTD_WEBHOOK_SECRET ?? "";
  if (!WEBHOOK_SECRET.test(secret))
    throw new ConfigError(
      "EXPORTD_WEBHOOK_SECRET must be whsec_ and at least 24 bytes in base64 when EXPORTD_WEBHOOK_URL is set.",
    );
  const events = (env.EXPORTD_WEBHOOK_EVENTS || DEFAULT_EVENT_TYPES.join(","))
    .split(",")
    .map((e) => e.trim());
  const bad = events.find((e) => !isExportEventType(e));
  if (bad !== undefined)
    throw new ConfigError(`EXPORTD_WEBHOOK_EVENTS names an unknown event type "${bad}".`);
  return [
    {
      name: "env",
      url: endpointUrl,
      events: events as ExportEventType[],
      description: "EXPORTD_WEBHOOK_URL",
      secret,
    },
  ];
}

function webhookSettings(env: Env, datasets: DatasetsConfig): WebhookSettings {
  const secretsKey = env.EXPORTD_WEBHOOK_SECRETS_KEY || null;
  if (secretsKey !== null && secretsKey.length < 32)
    throw new ConfigError("EXPORTD_WEBHOOK_SECRETS_KEY must be at least 32 characters.");
  const fromEnv = envWebhook(env);
  if (fromEnv.length && datasets.webhooks.some((w) => w.name === "env"))
    throw new ConfigError(
      'EXPORTD_WEBHOOK_URL and a config-file webhook named "env" clash; rename the latter.',
    );
  return {
    timeoutMs: Math.round(num(env, "EXPORTD_WEBHOOK_TIMEOUT_SECONDS", 10, 0.05, 60) * 1000),
    allowHttp: bool(env, "EXPORTD_WEBHOOK_ALLOW_HTTP", false),
    allowedNetworks: networks(env, "EXPORTD_WEBHOOK_ALLOW_NETWORKS"),
    secretsKey,
    retryScale: num(env, "EXPORTD_WEBHOOK_RETRY_SCALE", 1, 0.00001, 1),
    disableAfterMs: Math.round(num(env, "EXPORTD_WEBHOOK_DISABLE_AFTER_DAYS", 5, 0.00001, 365) * 86_400_000),
    concurrency: int(env, "EXPORTD_WEBHOOK_CONCURRENCY", 16, 0, 256),
    keepMs: Math.round(num(env, "EXPORTD_WEBHOOK_KEEP_DAYS", 30, 1, 3650) * 86_400_000),
    endpoints: [...datasets.webhooks, ...fromEnv],
  };
}

export function loadConfig(env: Env = process.env, cwd = process.cwd()): Config {
  const port = int(env, "PORT", 8080, 0, 65535);
  const host = env.HOST || "0.0.0.0";
  const dataDir = path.resolve(cwd, env.EXPORTD_DATA_DIR || "./data");
  const publicUrl = (env.EXPORTD_PUBLIC_URL || `http://localhost:${port}`).replace(/\/+$/, "");
  try {
    new URL(publicUrl);
  } catch {
    throw new ConfigError(`EXPORTD_PUBLIC_URL must be an absolute URL, got "${env.EXPORTD_PUBLIC_URL}".`);
  }
  const signingSecret = env.EXPORTD_SIGNING_SECRET || null;
  if (signingSecret !== null && signingSecret.length < 32) {
    throw new ConfigError("EXPORTD_SIGNING_SECRET must be at least 32 characters.");
  }
  const adminToken = env.EXPORTD_ADMIN_TOKEN || null;
  if (adminToken !== null && (adminToken.length < 32 || /\s/.test(adminToken))) {
    throw new ConfigError("EXPORTD_ADMIN_TOKEN must be at least 32 characters, without spaces.");
  }
  const adminPort = env.EXPORTD_ADMIN_PORT ? int(env, "EXPORTD_ADMIN_PORT", 0, 0, 65535) : null;
  if (adminPort !== null && adminPort !== 0 && adminPort === port) {
    throw new ConfigError("EXPORTD_ADMIN_PORT must differ from PORT (leave it unset to serve both on PORT).");
  }
  const leaseMs = Math.round(num(env, "EXPORTD_LEASE_SECONDS", 15, 1, 3600) * 1000);
  const datasets = datasetsConfig(env, cwd);
  const tokens = resolveTokenSettings(env, datasets.tokens, TOKEN_FILE_KEYS);
  if (Array.isArray(tokens)) throw new ConfigError(`Token settings: ${tokens.join("; ")}.`);
  return {
    port,
    host,
    publicUrl,
    dataDir,
    databaseFile: path.join(dataDir, "exportd.sqlite"),
    databaseUrl: url(env, "EXPORTD_DATABASE_URL", ["postgres:", "postgresql:"]),
    objectsDir: path.join(dataDir, "objects"),
    storage: storageConfig(env),
    signingSecret,
    linkTtlSeconds: int(env, "EXPORTD_LINK_TTL_SECONDS", 20 * 60, 10, 7 * 86_400),
    retentionDays: num(env, "EXPORTD_RETENTION_DAYS", 7, 0.0001, 3650),
    forgetAfterDays: num(env, "EXPORTD_FORGET_AFTER_DAYS", 180, 1, 3650),
    role: oneOf(env, "EXPORTD_ROLE", ["api", "worker", "all"] as const, "all"),
    worker: {
      concurrency: int(env, "EXPORTD_WORKER_CONCURRENCY", 2, 1, 64),
      leaseMs,
      heartbeatMs: Math.min(1000, Math.floor(leaseMs / 3)),
      pollMs: int(env, "EXPORTD_WORKER_POLL_MS", 1000, 10, 60_000),
      maxAttempts: int(env, "EXPORTD_MAX_ATTEMPTS", 3, 1, 100),
      maxTakeovers: int(env, "EXPORTD_MAX_TAKEOVERS", 5, 0, 1000),
      retryBaseMs: int(env, "EXPORTD_RETRY_BASE_MS", 2000, 1, 3_600_000),
      storageRetryMs: Math.round(num(env, "EXPORTD_STORAGE_RETRY_SECONDS", 180, 0, 86_400) * 1000),
      sourceStallMs: Math.round(num(env, "EXPORTD_SOURCE_STALL_SECONDS", 300, 0.1, 86_400) * 1000),
      shutdownGraceMs: Math.round(num(env, "EXPORTD_SHUTDOWN_GRACE_SECONDS", 10, 0, 3600) * 1000),
    },
    sweepIntervalMs: Math.round(num(env, "EXPORTD_SWEEP_INTERVAL_SECONDS", 60, 0.05, 86_400) * 1000),
    gzipLevel: int(env, "EXPORTD_GZIP_LEVEL", 1, 1, 9),
    bodyLimitBytes: int(env, "EXPORTD_BODY_LIMIT_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
    requestTimeoutMs: Math.round(num(env, "EXPORTD_REQUEST_TIMEOUT_SECONDS", 30, 1, 3600) * 1000),
    downloads: {
      maxInFlight: int(env, "EXPORTD_MAX_DOWNLOADS", 128, 1, 100_000),
      bufferBudgetBytes: int(env, "EXPORTD_DOWNLOAD_BUFFER_MB", 32, 1, 4096) * 1024 * 1024,
      stallTimeoutMs: Math.round(num(env, "EXPORTD_DOWNLOAD_STALL_SECONDS", 60, 0.1, 3600) * 1000),
    },
    eventStreams: {
      max: int(env, "EXPORTD_MAX_EVENT_STREAMS", 2000, 0, 1_000_000),
      pollMs: int(env, "EXPORTD_EVENT_POLL_MS", 500, 50, 60_000),
      heartbeatMs: Math.round(num(env, "EXPORTD_EVENT_HEARTBEAT_SECONDS", 15, 0.1, 3600) * 1000),
    },
    unauthenticatedPerMinute: int(env, "EXPORTD_UNAUTHENTICATED_PER_MINUTE", 120, 1, 1_000_000),
    datasets,
    tokens,
    corsOrigins: corsOrigins(env),
    webhooks: webhookSettings(env, datasets),
    logLevel: oneOf(
      env,
      "EXPORTD_LOG_LEVEL",
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      "info",
    ),
    redisUrl: url(env, "EXPORTD_REDIS_URL", ["redis:", "rediss:"]),
    minFreeBytes: int(env, "EXPORTD_MIN_FREE_BYTES", 256 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    maintenance: {
      enabled: bool(env, "EXPORTD_MAINTENANCE", false),
      retryAfterSeconds: int(env, "EXPORTD_MAINTENANCE_RETRY_AFTER", 300, 1, 86_400),
    },
    admin: { token: adminToken, port: adminPort, host: env.EXPORTD_ADMIN_HOST || "127.0.0.1" },
  };
}
