/**
 * Builds the Fastify app (no listen): error envelope, request ids, auth, routes, the OpenAPI
 * document generated from the route schemas, and the /docs page. Tests build it and use inject.
 */

import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import { AppError, invalidRequest } from "../domain/errors.js";
import { installAuth } from "./auth.js";
import type { HttpDeps } from "./deps.js";
import { handleClientError, installErrorHandling, newRequestId, sendError, sendRawError } from "./errors.js";
import { installMaintenance } from "./maintenance.js";
import { datasetRoutes } from "./routes/datasets.js";
import { exportRoutes } from "./routes/exports.js";
import { fileRoutes } from "./routes/files.js";
import { healthRoutes } from "./routes/health.js";
import { ErrorEnvelopeSchema, ExportSchema } from "./schemas.js";
import { redisWithFallback, watchRedis } from "./shared-rate-limits.js";

export async function buildApp(deps: HttpDeps, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the app's type the default one routes expect.
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per request, written below: without query strings, which carry link signatures.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "request_id" }),
    genReqId: newRequestId,
    clientErrorHandler: handleClientError,
    frameworkErrors: (_error, request, reply) =>
      sendError(
        reply,
        request,
        invalidRequest([
          { field: "url", code: "invalid", message: "The URL is not validly percent-encoded." },
        ]),
      ),
    bodyLimit: deps.config.bodyLimitBytes,
    ajv: {
      // Unknown fields are errors, not silently dropped; report every problem at once.
      customOptions: { removeAdditional: false, allErrors: true, coerceTypes: "array", useDefaults: true },
    },
    routerOptions: {
      // Long enough for any object key; ids are bounded by their schemas.
      maxParamLength: 2000,
      onMaxParamLength: (_path, _req, res) =>
        sendRawError(res, 400, "invalid_request", "The URL is too long."),
    },
  });

  // Callback-style hooks: on every request, an async hook would cost a promise for nothing.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });
  app.addHook("onResponse", (request, reply, done) => {
    // Skip building the line when info is off (the level is the app's, children inherit it).
    if (logger.isLevelEnabled("info")) {
      request.log.info(
        {
          method: request.method,
          path: request.url.split("?")[0],
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime),
        },
        "request",
      );
    }
    done();
  });
  installErrorHandling(app);
  // Bodies are JSON only: anything else is 415, not a string that fails validation later. An empty
  // JSON body is no body (POST …/cancel with a Content-Type header); routes that need one say so.
  app.removeContentTypeParser("text/plain");
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) =>
    body === "" ? done(null, undefined) : parseJson(request, String(body), done),
  );
  installAuth(app, deps.store, deps.clock);
  installMaintenance(
    app,
    deps.store,
    deps.config.maintenance.enabled ? { ...deps.config.maintenance, message: "" } : null,
    deps.clock,
  );
  // Per key, after authentication (route-level onRequest hooks run after the app's): the plan or
  // the tenant sets the budget. Unauthenticated requests are answered by auth before this runs.
  const { redis, metrics } = deps;
  await app.register(rateLimit, {
    global: true,
    // Counters in Redis when configured, so every API process draws on one budget per key; while
    // Redis is away, each process counts on its own rather than failing requests.
    ...(redis
      ? {
          store: redisWithFallback(redis, "exportd:rate:", watchRedis(redis, logger, metrics), () =>
            metrics.rateLimitFallback(),
          ),
        }
      : {}),
    hook: "onRequest",
    timeWindow: 60_000,
    enableDraftSpec: true,
    allowList: (request) => request.auth === null,
    keyGenerator: (request) => request.auth?.keyId ?? request.ip,
    max: async (request) => request.auth?.limits.requestsPerMinute ?? 1000,
    errorResponseBuilder: (_request, context) =>
      new AppError(
        "rate_limited",
        `This key may send ${context.max} requests per minute. Retry in ${context.after}.`,
        [],
        { "retry-after": String(Math.max(1, Math.ceil(context.ttl / 1000))) },
      ),
  });

  app.addSchema(ErrorEnvelopeSchema);
  app.addSchema(ExportSchema);

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "exportd",
        version: "0.1.0",
        description:
          "Asynchronous data exports: create an export, watch its progress, cancel it, and download its parts through short-lived signed links.",
      },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "An exportd API key." } },
      },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: "/docs", staticCSP: true });

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  healthRoutes(app, deps);
  datasetRoutes(app, deps);
  exportRoutes(app, deps);
  if (deps.signer && deps.filesRoot) fileRoutes(app, deps, deps.signer, deps.filesRoot);
  return app;
}
