/**
 * The OpenAPI document's answers, derived instead of written per route, so that a route or an error
 * code added later shows up by itself:
 * - each route's error responses come from the error catalogue (ErrorSpec.on: which requests may get
 *   a code) and the codes the route names in `config.errors`; `error.code` lists exactly those codes;
 * - routes without a scope are public (`security: []`);
 * - the headers answers carry by rule (X-Request-Id, RateLimit-*, Retry-After, WWW-Authenticate) are
 *   added to every response they appear on; headers a route declares itself are required unless
 *   marked `x-optional` (schemas.ts `responseHeader`).
 */
import { STATUS_CODES } from "node:http";
import type { FastifySchema, RouteOptions } from "fastify";
import { ERROR_CATALOGUE, type ErrorCode, type ErrorSpec, type RequestClass } from "../domain/errors.js";
import { pausedByMaintenance } from "./maintenance.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Codes the route answers besides those every route of its kind may get (ErrorSpec.on `named`). */
    errors?: readonly ErrorCode[];
  }
}

/** Methods whose requests carry a body Fastify parses (and so may be too large or of the wrong type). */
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);
/** What a wildcard route's `*` is called in the document (`{*}` is no valid parameter name). */
const WILDCARD_NAME = "key";

type RouteShape = Pick<RouteOptions, "method" | "url" | "config">;

/** The catalogue codes a route may answer with, in catalogue order. */
export function routeErrorCodes(route: RouteShape): ErrorCode[] {
  const methods = [route.method].flat();
  const classes = new Set<RequestClass>(["every"]);
  if (route.config?.scope) classes.add("authenticated");
  if (methods.some((m) => BODY_METHODS.has(m))) classes.add("body");
  if (methods.some((m) => pausedByMaintenance(m, route.url))) classes.add("write");
  const named = new Set<ErrorCode>(route.config?.errors ?? []);
  return (Object.entries(ERROR_CATALOGUE) as [ErrorCode, ErrorSpec][])
    .filter(([code, spec]) => spec.status !== null && (named.has(code) || (spec.on && classes.has(spec.on))))
    .map(([code]) => code);
}

/** One envelope response per status, its `error.code` limited to the codes of that status. */
function envelopeResponses(codes: readonly ErrorCode[]): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERROR_CATALOGUE[code].status as number;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [
      status,
      {
        description: list.map((c) => `\`${c}\`: ${ERROR_CATALOGUE[c].when}`).join("\n\n"),
        allOf: [
          { $ref: "Error" },
          { type: "object", properties: { error: { type: "object", properties: { code: { enum: list } } } } },
        ],
      },
    ]),
  );
}

/** @fastify/swagger's per-route `transform`: error responses, `security`, operationId, wildcard name. */
export function documentRoute(input: { schema: FastifySchema | undefined; url: string; route: RouteShape }): {
  schema: FastifySchema;
  url: string;
} {
  const { url, route } = input;
  // Route schemas carry the swagger keys (summary, operationId) beside Fastify's own.
  const schema = (input.schema ?? {}) as Record<string, unknown>;
  const response = {
    ...envelopeResponses(routeErrorCodes(route)),
    ...(schema.response as Record<string, unknown> | undefined),
  };
  const params = schema.params as { properties?: Record<string, unknown>; required?: string[] } | undefined;
  const { "*": wildcard, ...named } = params?.properties ?? {};
  return {
    url: url.endsWith("*") ? `${url.slice(0, -1)}:${WILDCARD_NAME}` : url,
    schema: {
      ...schema,
      ...(wildcard
        ? {
            params: {
              ...params,
              properties: { ...named, [WILDCARD_NAME]: wildcard },
              required: (params?.required ?? []).map((p) => (p === "*" ? WILDCARD_NAME : p)),
            },
          }
        : {}),
      operationId: String(
        schema.operationId ?? operationIdOf(String(schema.summary ?? `${route.method} ${url}`)),
      ),
      response,
      ...(route.config?.adminScope
        ? { security: [{ operator: [] }] }
        : route.config?.scope
          ? {}
          : { security: [] }),
    },
  };
}

/** "Create an export" → "createExport". */
function operationIdOf(summary: string): string {
  const words = summary
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w && !/^(a|an|the)$/i.test(w))
    .map((w) => w.toLowerCase());
  return words.map((w, i) => (i === 0 ? w : w[0]?.toUpperCase() + w.slice(1))).join("");
}

interface HeaderObject {
  description?: string;
  required?: boolean;
  schema: Record<string, unknown>;
}

const header = (
  description: string,
  required: boolean,
  schema: Record<string, unknown> = { type: "string" },
): HeaderObject => ({
  description,
  required,
  schema,
});

/** The headers an answer carries by rule, by its status and whether the route is authenticated. */
function ruleHeaders(status: number, authenticated: boolean): Record<string, HeaderObject> {
  const headers: Record<string, HeaderObject> = {
    "X-Request-Id": header("The request's id, as in an error envelope's `request_id`.", true),
  };
  // Rate limits are counted once the key is known: a 401 never has them; other answers of an
  // authenticated route have them unless authentication or maintenance refused the request first.
  if (authenticated && status !== 401) {
    const always = status < 400 || status === 429;
    const integer = { type: "integer", minimum: 0 };
    headers["RateLimit-Limit"] = header("Requests the key may send per window (60 s).", always, integer);
    headers["RateLimit-Remaining"] = header("Requests left in the current window.", always, integer);
    headers["RateLimit-Reset"] = header("Seconds until the window starts over.", always, integer);
  }
  if (status === 429 || status === 503) {
    headers["Retry-After"] = header("Seconds to wait before trying again.", status === 429, {
      type: "integer",
      minimum: 0,
    });
  }
  if (status === 401) headers["WWW-Authenticate"] = header('`Bearer realm="exportd"`.', true);
  return headers;
}

interface Operation {
  security?: unknown[];
  responses?: Record<string, { description?: string; headers?: Record<string, HeaderObject> }>;
}

/**
 * @fastify/swagger's `transformObject`: adds the rule headers to every response and turns the
 * `x-optional` mark of route-declared headers into `required`. Changes the document in place.
 */
export function documentHeaders<T extends object>(document: T): T {
  // The generated document's paths hold operations keyed by method; only these fields are read.
  const paths = (document as { paths?: Record<string, Record<string, Operation>> }).paths ?? {};
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item)) {
      // Operator routes are not rate limited and never answer 401: no RateLimit-* headers on them.
      const operator = operation.security?.some(
        (s) => typeof s === "object" && s !== null && "operator" in s,
      );
      const authenticated =
        !operator && !(Array.isArray(operation.security) && operation.security.length === 0);
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const declared: Record<string, HeaderObject> = {};
        for (const [name, h] of Object.entries(response.headers ?? {})) {
          const { "x-optional": optional, ...schema } = h.schema;
          declared[name] = { ...h, required: optional !== true, schema };
        }
        response.headers = { ...ruleHeaders(Number(status), authenticated), ...declared };
        // @fastify/swagger's placeholder for a response schema without a description.
        if (response.description === "Default Response") {
          response.description = STATUS_CODES[status] ?? status;
        }
      }
    }
  }
  return document;
}
