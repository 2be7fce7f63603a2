/**
 * /healthz (the process answers), /readyz (its metadata store and object store answer too) and
 * /metrics (Prometheus text format).
 */
import type { FastifyInstance } from "fastify";
import type { HttpDeps } from "../deps.js";
import { HealthResponses, MetricsResponses, ReadinessResponses } from "../schemas.js";

export function healthRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.get(
    "/healthz",
    { schema: { tags: ["health"], summary: "Liveness", response: HealthResponses } },
    async () => ({ status: "ok" }),
  );

  app.get(
    "/readyz",
    {
      schema: {
        tags: ["health"],
        summary: "Readiness: database and storage",
        operationId: "readiness",
        response: ReadinessResponses,
      },
    },
    async (_req, reply) => {
      const check = async (probe: () => Promise<void>) => {
        try {
          await probe();
          return "ok";
        } catch {
          return "unavailable";
        }
      };
      const { redis } = deps;
      const checks = {
        database: await check(() => deps.store.ping()),
        storage: await check(() => deps.storage.ping()),
        ...(redis ? { redis: await check(async () => void (await redis.ping())) } : {}),
      };
      const ready = Object.values(checks).every((c) => c === "ok");
      return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "unavailable", checks });
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
