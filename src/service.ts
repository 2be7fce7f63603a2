/**
 * The composition root: builds the store, object store, datasets, HTTP app, worker and sweeper
 * from one Config, according to the role. The CLI starts it; end-to-end tests start the CLI.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import type { Config } from "./config/index.js";
import { buildApp } from "./http/app.js";
import { buildDatasets } from "./sources/registry.js";
import { LocalObjectStore } from "./storage/local.js";
import { LinkSigner } from "./storage/signing.js";
import { SqliteStore } from "./store/sqlite/sqlite-store.js";
import type { MetadataStore } from "./store/types.js";
import { RetentionSweeper } from "./worker/sweeper.js";
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

export function openStore(config: Config): SqliteStore {
  const store = new SqliteStore(config.databaseFile);
  store.migrate();
  return store;
}

export interface Service {
  config: Config;
  store: MetadataStore;
  app: FastifyInstance | null;
  worker: ExportWorker | null;
  sweeper: RetentionSweeper | null;
  /** Stops taking work, hands running exports back, closes connections. */
  close(): Promise<void>;
}

export async function createService(
  config: Config,
  logger: Logger,
  clock: () => number = Date.now,
): Promise<Service> {
  const store = openStore(config);
  const signer = new LinkSigner(signingSecret(config));
  const storage = new LocalObjectStore(config.objectsDir, signer, config.publicUrl);
  await storage.ping();
  const datasets = buildDatasets(config.datasets);

  const runsWorker = config.role !== "api";
  const worker = runsWorker
    ? new ExportWorker({
        store,
        storage,
        datasets,
        config,
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

  const app =
    config.role !== "worker"
      ? await buildApp(
          {
            config,
            store,
            storage,
            datasets,
            signer,
            filesRoot: config.objectsDir,
            clock,
            onExportQueued: () => worker?.wake(),
          },
          logger,
        )
      : null;

  worker?.start();
  sweeper?.start();

  return {
    config,
    store,
    app,
    worker,
    sweeper,
    async close() {
      await app?.close();
      await worker?.stop();
      await sweeper?.stop();
      await datasets.close();
      await store.close();
    },
  };
}
