/**
 * /healthz (the process answers), /readyz (it can serve: metadata store, object store, the data
 * disk's free space and Redis when configured) and /metrics (Prometheus text format).
 */
import fs from "node:fs";
import type { FastifyInstance } from "fastify";
import { type ErrorDetail, serviceUnavailable } from "../../domain/errors.js";
import type { StoreLifecycle } from "../../metadata/types.js";
import type { HttpDeps } from "../deps.js";
import { sendError } from "../errors.js";
import { HealthResponses, MetricsResponses, ReadinessResponses } from "./schemas.js";

/**
 * Load balancers poll /readyz: each check gets this long, and they run side by side, so a hung
 * dependency makes the answer a 503 within about a second instead of a timeout.
 */
const CHECK_TIMEOUT_MS = 1000;

/** Resolves with the probe, or rejects once `CHECK_TIMEOUT_MS` passes. */
async function within(probe: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)),
          CHECK_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A reason fit for the public answer; other errors (with hosts and ports) only name the check. */
class NotReady extends Error {}

/** One readiness check: resolves when the dependency can serve, rejects when it cannot. */
type Check = () => Promise<void>;

const UNAVAILABLE: Record<string, string> = {
  database: "The metadata store does not answer.",
  storage: "The object store does not answer.",
  redis: "Redis does not answer.",
};

/** What the health routes use: of the metadata store, only its ping. */
export type HealthRouteDeps = Pick<HttpDeps, "config" | "storage" | "redis" | "metrics"> & {
  store: Pick<StoreLifecycle, "ping">;
};

function readinessChecks(deps: HealthRouteDeps): Record<string, Check> {
  const { config, store, storage, redis } = deps;
  const checks: Record<string, Check> = {
    database: () => store.ping(),
    storage: () => storage.ping(),
  };
  // The data folder's disk matters when it holds the SQLite file or the parts.
  if (!config.databaseUrl || config.storage.kind === "local") {
    checks.disk = async () => {
      const stats = await fs.promises.statfs(config.dataDir);
      const free = stats.bavail * stats.bsize;
      if (free < config.minFreeBytes) {
        throw new NotReady(
          `${free} bytes free on the data disk, below the floor of ${config.minFreeBytes} (EXPORTD_MIN_FREE_BYTES).`,
        );
      }
    };
  }
  if (redis) {
    checks.redis = async () => {
      if (redis.status !== "ready") throw new NotReady(`Redis is not connected (${redis.status}).`);
      await redis.ping();
    };
  }
  return checks;
}

export function healthRoutes(app: FastifyInstance, deps: HealthRouteDeps): void {
  app.get(
    "/healthz",
    { schema: { tags: ["health"], summary: "Liveness", response: HealthResponses } },
    async () => ({ status: "ok" }),
  );

  const checks = Object.entries(readinessChecks(deps));
  app.get(
    "/readyz",
    {
      config: { errors: ["service_unavailable"] },
      schema: {
        tags: ["health"],
        summary: "Readiness: database, storage, data disk and Redis",
        operationId: "readiness",
        response: ReadinessResponses,
        description:
          "200 with each check `ok`, or 503 `service_unavailable` whose `details` name each dependency that cannot serve.",
      },
    },
    async (request, reply) => {
      const results = await Promise.allSettled(checks.map(([, check]) => within(check)));
      const failed: ErrorDetail[] = [];
      results.forEach((result, i) => {
        if (result.status === "rejected") {
          const field = checks[i]?.[0] as string;
          const message =
            result.reason instanceof NotReady ? result.reason.message : (UNAVAILABLE[field] ?? "No answer.");
          failed.push({ field, code: "unavailable", message });
        }
      });
      if (failed.length === 0) {
        return reply.send({
          status: "ready",
          checks: Object.fromEntries(checks.map(([name]) => [name, "ok"])),
        });
      }
      return sendError(
        reply,
        request,
        serviceUnavailable(`Not ready: ${failed.map((f) => f.field).join(", ")} cannot serve.`, failed),
      );
    },
  );

  app.get(
    "/metrics",
    { schema: { tags: ["health"], summary: "Prometheus metrics", response: MetricsResponses } },
    async (_request, reply) => {
      const { contentType, body } = await deps.metrics.render();
      return reply.header("content-type", contentType).send(body);
    },
  );
}
