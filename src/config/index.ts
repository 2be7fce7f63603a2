/**
 * The one configuration object, read from the environment once at start and passed down.
 * No other module reads process.env. A bad value stops the start with a message naming the variable.
 */
import path from "node:path";
import { ConfigFileError, type DatasetsConfig, NO_CONFIG_FILE, readDatasetsConfig } from "./file.js";

export type { DatasetConfig, DatasetsConfig, SourceConfig } from "./file.js";

export type Role = "api" | "worker" | "all";

export interface Config {
  port: number;
  host: string;
  /** Base of the links exportd hands out (signed file links, Location headers). */
  publicUrl: string;
  dataDir: string;
  /** SQLite metadata file. */
  databaseFile: string;
  /** Root of the local object store. */
  objectsDir: string;
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
    retryBaseMs: number;
  };
  sweepIntervalMs: number;
  gzipLevel: number;
  bodyLimitBytes: number;
  logLevel: string;
  /** Sources and datasets from the EXPORTD_CONFIG file; without one, only the demo dataset. */
  datasets: DatasetsConfig;
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

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}".`);
  }
  return raw as T;
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
  const leaseMs = Math.round(num(env, "EXPORTD_LEASE_SECONDS", 15, 1, 3600) * 1000);
  return {
    port,
    host,
    publicUrl,
    dataDir,
    databaseFile: path.join(dataDir, "exportd.sqlite"),
    objectsDir: path.join(dataDir, "objects"),
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
      retryBaseMs: int(env, "EXPORTD_RETRY_BASE_MS", 2000, 1, 3_600_000),
    },
    sweepIntervalMs: Math.round(num(env, "EXPORTD_SWEEP_INTERVAL_SECONDS", 60, 0.05, 86_400) * 1000),
    gzipLevel: int(env, "EXPORTD_GZIP_LEVEL", 1, 1, 9),
    bodyLimitBytes: int(env, "EXPORTD_BODY_LIMIT_BYTES", 64 * 1024, 1024, 16 * 1024 * 1024),
    datasets: datasetsConfig(env, cwd),
    logLevel: oneOf(
      env,
      "EXPORTD_LOG_LEVEL",
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      "info",
    ),
  };
}
