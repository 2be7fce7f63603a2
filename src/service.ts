/**
 * The composition root: builds the store, object store, datasets, HTTP app, worker and sweeper
 * from one Config, according to the role. The CLI starts it; end-to-end tests start the CLI.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Config } from "./config/index.js";
import { buildApp } from "./http/app.js";
import { presentExport } from "./http/exports/presenter.js";
import { openMetadataStore } from "./metadata/open.js";
import type { MetadataStore } from "./metadata/types.js";
import { Metrics } from "./metrics/metrics.js";
import { LocalObjectStore } from "./object-store/local.js";
import { S3ObjectStore } from "./object-store/s3.js";
import { LinkSigner } from "./object-store/signing.js";
import type { ObjectStore } from "./object-store/types.js";
import { buildDatasets } from "./sources/registry.js";
import { syncConfigEndpoints } from "./usecases/webhook-endpoints.js";
import { SecretBox } from "./webhooks/secret-box.js";
import { RetentionSweeper } from "./worker/sweeper.js";
import { WebhookRunner } from "./worker/webhook-runner.js";
import { ExportWorker } from "./worker/worker.js";

/** The configured secret, or one generated on first start and kept (0600) in the data folder. */
export function signingSecret(config: Config): string {
  if (config.signingSecret) return config.signingSecret;
  const file = path.join(config.dataDir, "signing-secret");
  fs.mkdirSync(config.dataDir, { recursive: true });
  try {
    fs.writeFileSync(file, randomBytes(32).toString("base64url"), { flag: "wx", mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return fs.readFileSync(file, "utf8").trim();
}

/**
 * The key that seals webhook signing secrets at rest (webhooks/secret-box.ts): the configured one,
 * or one generated on first start and kept (0600) in the data folder. Processes that share a
 * PostgreSQL store but not a data folder must be given the same EXPORTD_WEBHOOK_SECRETS_KEY.
 */
export function webhookSecretsKey(config: Config): string {
  if (config.webhooks.secretsKey) return config.webhooks.secretsKey;
  const file = path.join(config.dataDir, "webhook-secrets-key");
  fs.mkdirSync(config.dataDir, { recursive: true });
  try {
    fs.writeFileSync(file, randomBytes(32).toString("base64url"), { flag: "wx", mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  return fs.readFileSync(file, "utf8").trim();
}

/**
 * The secret of zip archive links with S3 storage: the configured or generated one (signingSecret).
 * An S3 deployment may run its API on a read-only data folder, which had no need to be writable
 * before archives were served with S3: there a secret of this process only is used, with a warning
 * (archive links then work on this process until it restarts; EXPORTD_SIGNING_SECRET fixes it).
 */
function archiveSigningSecret(config: Config, logger: Logger): string {
  try {
    return signingSecret(config);
  } catch (err) {
    logger.warn(
      { err },
      "EXPORTD_SIGNING_SECRET is unset and the data folder cannot hold a generated one: zip archive links are signed with a secret of this process only. Set EXPORTD_SIGNING_SECRET.",
    );
    return randomBytes(32).toString("base64url");
  }
}

/**
 * The configured metadata store, migrated: PostgreSQL when EXPORTD_DATABASE_URL is set, else SQLite.
 * Its methods throw StoreUnavailableError while the database cannot serve (metadata/unavailable.ts).
 */
export async function openStore(config: Config): Promise<MetadataStore> {
  return openMetadataStore(config);
}

/**
 * The configured object store, checked (`ping`), and the signer of exportd's /files links: every
 * part's with local storage, the zip archives' with any object store (S3 presigns its parts).
 * `servesArchives`: the logger of a process that serves archive links (null: it serves none — an
 * S3 deployment's worker, the CLI — and gets no signer with S3). The service and the CLI's
 * commands that delete files use it.
 */
export async function openObjectStore(
  config: Config,
  servesArchives: Logger | null = null,
): Promise<{ storage: ObjectStore; signer: LinkSigner | null }> {
  const signer =
    config.storage.kind === "local"
      ? new LinkSigner(signingSecret(config))
      : servesArchives
        ? new LinkSigner(archiveSigningSecret(config, servesArchives))
        : null;
  const storage: ObjectStore =
    config.storage.kind === "s3"
      ? new S3ObjectStore(config.storage)
      : new LocalObjectStore(config.objectsDir, signer as LinkSigner, config.publicUrl);
  await storage.ping();
  return { storage, signer };
}

export interface Service {
  config: Config;
  store: MetadataStore;
  app: FastifyInstance | null;
  /** The operator API's own app when EXPORTD_ADMIN_PORT is set (listened on by the CLI); else null. */
  adminApp: FastifyInstance | null;
  worker: ExportWorker | null;
  sweeper: RetentionSweeper | null;
  /** The webhook deliverer (worker roles). */
  webhooks: WebhookRunner | null;
  /**
   * Stops accepting requests and claiming exports; requests in flight may finish and running exports
   * may finish their current part (both within EXPORTD_SHUTDOWN_GRACE_SECONDS, then they are cut and
   * the exports go back to the queue); idle connections close at once; then the stores close.
   */
  close(): Promise<void>;
}

/** How long one Redis command (a rate-limit count) may take before the request counts per process. */
const REDIS_COMMAND_TIMEOUT_MS = 300;

export async function createService(
  config: Config,
  logger: Logger,
  clock: () => number = Date.now,
): Promise<Service> {
  const store = await openStore(config);
  const local = config.storage.kind === "local";
  const { storage, signer } = await openObjectStore(config, config.role === "worker" ? null : logger);
  const datasets = buildDatasets(config.datasets);
  const metrics = new Metrics(
    () => store.countExportsByStatus(),
    () => store.countPendingWebhooks(),
  );
  const secrets = new SecretBox(webhookSecretsKey(config));
  const policy = { allowHttp: config.webhooks.allowHttp, allowedNetworks: config.webhooks.allowedNetworks };
  await syncConfigEndpoints({ store, secrets, clock }, config.webhooks.endpoints);
  // Redis may be down at start or later: the API then starts and answers anyway, counting rate
  // limits per process (http/shared-rate-limits.ts) with /readyz at 503 until Redis is back. The
  // client reconnects by itself (at most every 2 s); without the offline queue a command while it
  // is away fails at once instead of holding the request.
  const redis =
    config.redisUrl && config.role !== "worker"
      ? new Redis(config.redisUrl, {
          maxRetriesPerRequest: 1,
          connectTimeout: 2000,
          enableOfflineQueue: false,
          // A rate-limit count is one round trip of well under a millisecond; a Redis that is
          // connected but does not answer (paused, swapping, a stalled network) would otherwise hold
          // every authenticated request. Past this the request counts per process instead.
          commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
        })
      : null;

  const runsWorker = config.role !== "api";
  const worker = runsWorker
    ? new ExportWorker({
        store,
        storage,
        datasets,
        config,
        metrics,
        logger: logger.child({ component: "worker" }),
        clock,
      })
    : null;
  const sweeper = runsWorker
    ? new RetentionSweeper({
        store,
        storage,
        forgetAfterDays: config.forgetAfterDays,
        intervalMs: config.sweepIntervalMs,
        logger: logger.child({ component: "sweeper" }),
        clock,
      })
    : null;

  const webhooks =
    runsWorker && config.webhooks.concurrency > 0
      ? new WebhookRunner({
          delivery: {
            store,
            secrets,
            // The document of GET /v1/exports/{id}, without signed links.
            present: (record) => presentExport(record, null, null),
            publicUrl: config.publicUrl,
            policy,
            timeoutMs: config.webhooks.timeoutMs,
            retryScale: config.webhooks.retryScale,
            disableAfterMs: config.webhooks.disableAfterMs,
            metrics,
            logger: logger.child({ component: "webhooks" }),
            clock,
          },
          concurrency: config.webhooks.concurrency,
          pollMs: config.worker.pollMs,
          keepMs: config.webhooks.keepMs,
          logger: logger.child({ component: "webhooks" }),
        })
      : null;

  const httpDeps = {
    config,
    store,
    storage,
    datasets,
    signer,
    filesRoot: local ? config.objectsDir : null,
    metrics,
    redis,
    clock,
    onExportQueued: () => worker?.wake(),
    webhooks: { store, secrets, policy, clock, onDeliveryDue: () => webhooks?.wake() },
  };
  const separateAdmin = config.admin.port !== null;
  const serves = config.role !== "worker";
  const app = serves ? await buildApp(httpDeps, logger, separateAdmin ? "public" : "all") : null;
  const adminApp =
    serves && separateAdmin ? await buildApp(httpDeps, logger.child({ listener: "admin" }), "admin") : null;

  worker?.start();
  sweeper?.start();
  webhooks?.start();

  return {
    config,
    store,
    app,
    adminApp,
    worker,
    sweeper,
    webhooks,
    async close() {
      // All at once: every listener stops accepting and the worker stops claiming at the same
      // moment, and one grace period (EXPORTD_SHUTDOWN_GRACE_SECONDS) bounds requests in flight
      // (http/drain.ts) and running exports alike, instead of one after the other.
      await Promise.all([
        app?.close(),
        adminApp?.close(),
        worker?.stop(config.worker.shutdownGraceMs),
        webhooks?.stop(),
        sweeper?.stop(),
      ]);
      await datasets.close();
      await store.close();
      await storage.close();
      redis?.disconnect();
    },
  };
}
