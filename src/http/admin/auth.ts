/**
 * Authentication of the operator API (/admin/v1). A route declares `config: { adminScope }`; only
 * an operator credential reaches it — an operator key (`exo_…`) or the bootstrap token
 * (EXPORTD_ADMIN_TOKEN). Anything else (no credential, a tenant key, a JWT, a revoked or unknown
 * operator key) is answered 404 `not_found` exactly as an unknown path, so the operator surface is
 * not advertised; an operator key without the route's scope gets 403 `insufficient_scope`.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { AppError, type ErrorCode } from "../../domain/errors.js";
import type { OperatorScope } from "../../domain/operator-scopes.js";
import type { OperatorAuthenticator, OperatorCaller } from "../../usecases/operator-keys.js";

/** A registered operator route and the operator scope it needs. */
export interface AdminRouteScope {
  method: string;
  url: string;
  scope: OperatorScope;
}

declare module "fastify" {
  interface FastifyRequest {
    operator: OperatorCaller | null;
  }
  interface FastifyInstance {
    /** Every operator route with its scope: what the operator API tests walk. */
    adminRouteScopes: readonly AdminRouteScope[];
  }
  interface FastifyContextConfig {
    /** The operator scope an operator route needs; marks the route as an operator route. */
    adminScope?: OperatorScope;
  }
}

/** What any operator route may answer: unknown to this caller, a scope missing, the store down. */
const ADMIN_ERRORS: readonly ErrorCode[] = ["not_found", "insufficient_scope", "service_unavailable"];

/** The config of a reading operator route: the `admin:read` scope, its errors and `more`. */
export function adminRead(...more: ErrorCode[]) {
  return { adminScope: "admin:read" as const, errors: [...ADMIN_ERRORS, ...more] };
}

/** The config of a writing operator route: the `admin:write` scope, its errors and `more`. */
export function adminWrite(...more: ErrorCode[]) {
  return { adminScope: "admin:write" as const, errors: [...ADMIN_ERRORS, ...more] };
}

/** The answer of an unknown path (http/errors.ts's not-found handler), word for word. */
function unknownRoute(request: FastifyRequest): AppError {
  return new AppError("not_found", `No route ${request.method} ${request.url.split("?")[0]}.`);
}

/** The bearer token of a request with exactly one Authorization header, or null. */
function bearerToken(request: FastifyRequest): string | null {
  let lines = 0;
  const raw = request.raw.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === "authorization") lines += 1;
  if (lines !== 1) return null;
  return /^Bearer[ ]+(\S+)\s*$/i.exec(request.headers.authorization ?? "")?.[1] ?? null;
}

/** Adds the operator routes' authentication hook and their registry. */
export function installAdminAuth(
  app: FastifyInstance,
  operators: OperatorAuthenticator,
  clock: () => number,
): void {
  const routes: AdminRouteScope[] = [];
  app.decorate("adminRouteScopes", routes);
  app.decorateRequest("operator", null);
  app.addHook("onRoute", (route) => {
    const scope = route.config?.adminScope;
    if (!scope) {
      if (route.url.startsWith("/admin/"))
        throw new Error(`route ${route.url} under /admin declares no adminScope`);
      return;
    }
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, scope });
  });
  app.addHook("onRequest", async (request: FastifyRequest) => {
    const scope = request.routeOptions.config.adminScope;
    if (!scope) return;
    const token = bearerToken(request);
    const caller = token === null ? null : await operators.verify(token, clock());
    if (!caller) throw unknownRoute(request);
    if (!caller.scopes.includes(scope)) {
      throw new AppError(
        "insufficient_scope",
        `This route needs the "${scope}" scope, which the operator key lacks.`,
        [{ field: "authorization", code: "missing_scope", message: scope }],
      );
    }
    request.operator = caller;
    (request.log as Logger).setBindings({ actor: caller.actor });
  });
}

/** The authenticated operator; only for operator routes. */
export function operatorOf(request: FastifyRequest): OperatorCaller {
  if (!request.operator) throw new Error("route has no adminScope but reads the operator");
  return request.operator;
}
