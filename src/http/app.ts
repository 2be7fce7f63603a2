/**
 * Builds the Fastify app (no listen): error envelope, request ids, auth, routes, the OpenAPI
 * document generated from the route schemas, and the /docs page. Tests build it and use inject.
 */

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { AjvCompiler, type Options as AjvOptions, type BuildCompilerFromPool } from "@fastify/ajv-compiler";
import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import { AppError, invalidRequest } from "../domain/errors.js";
import { OperatorAuthenticator } from "../usecases/operator-keys.js";
import { TenantActing } from "./acting.js";
import { installAdminAuth } from "./admin/auth.js";
import { TenantSchema } from "./admin/schemas.js";
import { supportRoutes } from "./admin/support-routes.js";
import { tenantRoutes } from "./admin/tenant-routes.js";
import { adminWebhookRoutes } from "./admin/webhook-routes.js";
import { installAuth } from "./auth.js";
import { consoleRoutes } from "./console/routes.js";
import { installCors } from "./cors.js";
import { datasetRoutes } from "./datasets/routes.js";
import type { HttpDeps } from "./deps.js";
import { installConnectionDrain } from "./drain.js";
import {
  clientError,
  endSocketWithError,
  handleClientError,
  installErrorHandling,
  newRequestId,
  sendError,
  sendRawError,
} from "./errors.js";
import { exportRoutes } from "./exports/routes.js";
import { ExportSchema } from "./exports/schemas.js";
import { fileRoutes } from "./files/routes.js";
import { healthRoutes } from "./health/routes.js";
import { installJsonBody } from "./json-body.js";
import { installMaintenance } from "./maintenance.js";
import { documentHeaders, documentRoute } from "./openapi.js";
import { ErrorEnvelopeSchema } from "./schemas.js";
import { redisWithFallback, watchRedis } from "./shared-rate-limits.js";
import { TenantsById } from "./tenants-by-id.js";
import { webhookRoutes } from "./webhooks/routes.js";

/** reg-name, IPv4 or [IPv6], then an optional port (RFC 9110 §7.2, RFC 3986 §3.2.2). */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{1,5})?$/;

/** HTTP/1.1 requires one valid Host header (RFC 9112 §3.2); Node no longer checks it (requireHostHeader). */
function hostProblem(request: FastifyRequest): AppError | null {
  const { host } = request.headers;
  if (host === undefined ? request.raw.httpVersion !== "1.1" : HOST.test(host)) return null;
  return invalidRequest([
    {
      field: "host",
      code: host === undefined ? "required" : "invalid",
      message: "HTTP/1.1 requests need one valid Host header.",
    },
  ]);
}

/**
 * What Node's server answers before Fastify sees a request, brought into the envelope: an `Expect`
 * other than 100-continue (417), CONNECT (405: exportd is no proxy), and the header timeout.
 */
function installServerEdges(app: FastifyInstance, requestTimeoutMs: number): void {
  const server = app.server;
  // Header time is bounded on its own so a client that trickles headers holds a connection briefly.
  server.headersTimeout = Math.min(10_000, requestTimeoutMs);
  server.on("checkExpectation", (_request: IncomingMessage, res: ServerResponse) => {
    const [code, message] = clientError(417);
    sendRawError(res, 417, code, message, { connection: "close" });
  });
  server.on("connect", (_request: IncomingMessage, socket: Duplex) => {
    const [code, message] = clientError(405);
    endSocketWithError(socket, 405, code, message, { allow: "GET, HEAD, POST" });
  });
}

/** What the pool's compile functions really receive from Fastify (their types say a bare schema). */
type Compile = (route: { schema: unknown; httpPart?: string }) => unknown;
/** An ajv validate function as Fastify calls it: its errors on `errors`, `schemaEnv` when it has one. */
type Validate = ((data: unknown, context?: unknown) => boolean) & { errors?: unknown; schemaEnv?: unknown };

/** Plain decimal digits, at most 15 (every such number is a safe integer). */
const DECIMAL = /^[0-9]{1,15}$/;

/**
 * Wraps the converting validator of a query string or path params so that its integers are written
 * as plain decimal digits: ajv's conversion (`+value`) would also read `0x10`, `+1`, ` 1`, `1.0` and
 * `1e1`. Every integer property of every route is covered, without a mark on its schema.
 */
function decimalIntegers(schema: unknown, validate: Validate): Validate {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> } | null)?.properties ?? {};
  const integers = Object.keys(properties).filter((name) => properties[name]?.type === "integer");
  if (integers.length === 0) return validate;
  const wrapped: Validate = (data, context) => {
    const bad = integers.filter((name) => {
      const raw = (data as Record<string, unknown> | null)?.[name];
      // A repeated parameter is an array; ajv's own check refuses all but a one-item array.
      const value = Array.isArray(raw) && raw.length === 1 ? raw[0] : raw;
      return typeof value === "string" && !DECIMAL.test(value);
    });
    const valid = validate(data, context);
    if (bad.length === 0) {
      wrapped.errors = validate.errors;
      return valid;
    }
    const own = bad.map((name) => ({
      instancePath: `/${name}`,
      keyword: "type",
      params: { type: "integer" },
      message: "must be an integer in decimal digits",
    }));
    const others = ((validate.errors ?? []) as { instancePath: string }[]).filter(
      (e) => !bad.some((name) => e.instancePath === `/${name}`),
    );
    wrapped.errors = [...own, ...others];
    return false;
  };
  wrapped.schemaEnv = validate.schemaEnv;
  return wrapped;
}

/**
 * Fastify's ajv compiler with one ajv instance per kind of input: bodies are JSON and carry their own
 * types, so `"dry_run": 0`, `null` or `"part_max_rows": true` are refused (400 invalid_type) rather
 * than converted; the other parts keep the configured conversion, with integers in decimal digits
 * only (decimalIntegers) and booleans only `true` or `false` (ajv's conversion of strings).
 */
function strictBodyValidators(): BuildCompilerFromPool {
  const converting = AjvCompiler();
  const strict = AjvCompiler();
  return (externalSchemas, options) => {
    const forParts = converting(externalSchemas, options) as unknown as Compile;
    const forBodies = strict(externalSchemas, {
      plugins: options?.plugins,
      onCreate: options?.onCreate,
      customOptions: { ...(options?.customOptions as AjvOptions | undefined), coerceTypes: false },
    }) as unknown as Compile;
    const compile: Compile = (route) =>
      route.httpPart === "body"
        ? forBodies(route)
        : route.httpPart === "querystring" || route.httpPart === "params"
          ? decimalIntegers(route.schema, forParts(route) as Validate)
          : forParts(route);
    return compile as unknown as ReturnType<BuildCompilerFromPool>;
  };
}

/**
 * Which routes an app serves: `all` (the public API and the operator API on one listener), `public`
 * (the public API only: EXPORTD_ADMIN_PORT moves the operator API to its own app), `admin` (the
 * operator API with health and its own /openapi.json, for that listener).
 */
export type Surface = "all" | "public" | "admin";

export async function buildApp(
  deps: HttpDeps,
  logger: Logger,
  surface: Surface = "all",
): Promise<FastifyInstance> {
  const app = Fastify({
    // pino's Logger is a FastifyBaseLogger; the cast keeps the app's type the default one routes expect.
    loggerInstance: logger as FastifyBaseLogger,
    // One log line per request, written below: without query strings, which carry link signatures.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "request_id" }),
    genReqId: newRequestId,
    clientErrorHandler: handleClientError,
    http: {
      // A missing Host is answered by the onRequest hook below, in the envelope (Node's own 400 is bare).
      requireHostHeader: false,
      // How often Node checks the header and request timeouts; its default (30 s) would let a
      // connection idle far past them.
      connectionsCheckingInterval: 1_000,
    },
    // The whole request (headers and a body of at most bodyLimit) must arrive within this; slow
    // senders are answered 408 (handleClientError) instead of holding a connection.
    requestTimeout: deps.config.requestTimeoutMs,
    // Longer than the idle timeout of common load balancers (60 s), so they close first.
    keepAliveTimeout: 72_000,
    // A request that reaches a connection still open while the app closes (pipelined behind one in
    // flight) is answered like any other, with `Connection: close`, within the grace period
    // (http/drain.ts); Fastify's own 503 would bypass the error envelope.
    return503OnClosing: false,
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
      // Unknown fields are errors, not silently dropped; report every problem at once. Query
      // strings, params and headers are text, so their decimal digits and true/false are converted to
      // the schema's type (decimalIntegers); JSON bodies are never converted (strictBodyValidators).
      customOptions: { removeAdditional: false, allErrors: true, coerceTypes: "array", useDefaults: true },
    },
    schemaController: { compilersFactory: { buildValidator: strictBodyValidators() } },
    routerOptions: {
      // Long enough for any object key; ids are bounded by their schemas.
      maxParamLength: 2000,
      onMaxParamLength: (_path, _req, res) =>
        sendRawError(res, 400, "invalid_request", "The URL is too long."),
    },
  });

  installServerEdges(app, deps.config.requestTimeoutMs);
  installConnectionDrain(app, deps.config.worker.shutdownGraceMs);

  // Callback-style hooks: on every request, an async hook would cost a promise for nothing.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done(hostProblem(request) ?? undefined);
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
  installJsonBody(app);
  // Before authentication: preflights carry no credentials, and refusals need the CORS headers too.
  // Only the public surface: the operator API is never called from a browser page.
  if (deps.config.corsOrigins && surface !== "admin") await installCors(app, deps.config.corsOrigins);
  const operators = new OperatorAuthenticator(deps.store, deps.config.admin.token);
  // One tenant cache for authentication and the /files route (a disable shows on both at once).
  const tenantsById = new TenantsById(deps.store);
  installAuth(
    app,
    deps.store,
    tenantsById,
    deps.clock,
    deps.config.unauthenticatedPerMinute,
    new TenantActing(operators, deps.store),
    deps.config.tokens,
  );
  installAdminAuth(app, operators, deps.clock);
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
    // Not async: the plugin awaits the number either way, an async function would add a promise.
    max: (request) => request.auth?.limits.requestsPerMinute ?? 1000,
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
  if (surface !== "public") app.addSchema(TenantSchema);

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "exportd",
        version: "0.1.0",
        license: { name: "Apache-2.0", identifier: "Apache-2.0" },
        description:
          "Asynchronous data exports: create an export, watch its progress, cancel it, and download its parts through short-lived signed links.",
      },
      servers: [{ url: deps.config.publicUrl, description: "This exportd (EXPORTD_PUBLIC_URL)." }],
      components: {
        securitySchemes: {
          bearer: {
            type: "http",
            scheme: "bearer",
            description:
              "An exportd API key (`exd_…`), or the product's own sign-in token (JWT) when tokens are configured (docs/integration.md).",
          },
          operator: {
            type: "http",
            scheme: "bearer",
            description:
              "An operator key (`exo_…`) or the bootstrap token (EXPORTD_ADMIN_TOKEN). Any other credential gets 404 on operator routes.",
          },
        },
      },
      security: [{ bearer: [] }],
      tags: [
        { name: "exports", description: "A tenant's exports." },
        { name: "datasets", description: "What a tenant may export." },
        { name: "files", description: "Downloads through signed links (no API key)." },
        { name: "health", description: "Liveness, readiness and metrics." },
        {
          name: "operator",
          description:
            "The operator API (`/admin/v1`): tenants, plans, API keys, maintenance, support views across tenants, product-wide webhook endpoints and the audit log. Only operator credentials reach it; with EXPORTD_ADMIN_PORT it is served on that listener only.",
        },
      ],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
    // Error responses, public routes and answer headers are derived (openapi.ts), not written per route.
    transform: documentRoute,
    transformObject: (document) =>
      "openapiObject" in document ? documentHeaders(document.openapiObject) : document.swaggerObject,
  });
  await app.register(swaggerUi, { routePrefix: "/docs", staticCSP: true });

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  healthRoutes(app, deps);
  if (surface !== "admin") {
    datasetRoutes(app, deps);
    exportRoutes(app, { ...deps, exports: deps.store });
    if (deps.webhooks) webhookRoutes(app, deps.webhooks);
    if (deps.signer)
      fileRoutes(app, { ...deps, exports: deps.store, tenants: tenantsById }, deps.signer, deps.filesRoot);
    consoleRoutes(app);
  }
  if (surface !== "public") {
    tenantRoutes(app, deps);
    supportRoutes(app, deps);
    if (deps.webhooks) adminWebhookRoutes(app, { ...deps, webhooks: deps.webhooks });
  }
  return app;
}
