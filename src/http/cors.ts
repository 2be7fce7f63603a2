/**
 * CORS for the public API (@fastify/cors), so a product's page can call exportd with a short-lived
 * token: only the configured origins (EXPORTD_CORS_ORIGINS), off by default. Preflights are answered
 * before authentication (a browser sends them without the Authorization header); operator routes
 * (/admin) get no CORS at all. Bearer credentials only: no cookies, so no
 * Access-Control-Allow-Credentials.
 */
import cors, { type FastifyCorsOptions } from "@fastify/cors";
import type { FastifyInstance, FastifyRequest } from "fastify";

/**
 * Headers a page's script may send beyond the safelisted ones: what the console and the typed
 * client send (the credential, JSON bodies, a create's Idempotency-Key, Last-Event-ID when a
 * progress stream reconnects, Range when a download resumes), and the conditional headers the
 * /files route honours (If-Range and If-Match to resume only the same file, If-None-Match and
 * If-Modified-Since to revalidate, If-Unmodified-Since as If-Match by date). A header missing here
 * fails the preflight, so the browser never sends the request.
 */
const ALLOWED_HEADERS = [
  "Authorization",
  "Content-Type",
  "Idempotency-Key",
  "Last-Event-ID",
  "Range",
  "If-Range",
  "If-Match",
  "If-None-Match",
  "If-Modified-Since",
  "If-Unmodified-Since",
];
/**
 * Headers a page's script may read: retry hints, idempotent replays, where a new export is, what
 * a download is (ranges, validators, name), the request id for support, the rate-limit budget.
 */
const EXPOSED_HEADERS = [
  "Retry-After",
  "Idempotent-Replayed",
  "Location",
  "ETag",
  "Last-Modified",
  "Content-Range",
  "Accept-Ranges",
  "Content-Length",
  "Content-Disposition",
  "X-Request-Id",
  "RateLimit-Limit",
  "RateLimit-Remaining",
  "RateLimit-Reset",
  "WWW-Authenticate",
];
/** Browsers may reuse a preflight's answer this long (seconds; Chromium caps it at 7200). */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/** Routes under this prefix never answer CORS: the operator API is for servers, not pages. */
const NO_CORS_PREFIX = "/admin";

/** True for the operator prefix and what lies under it. */
function isAdminPath(path: string): boolean {
  return path === NO_CORS_PREFIX || path.startsWith(`${NO_CORS_PREFIX}/`);
}

/**
 * The path as the router matches it: percent-decoded (`/%61dmin/v1/tenants` is routed to
 * `/admin/v1/tenants`), so an encoded spelling cannot get operator answers CORS headers. A preflight
 * matches no route of its own, so the route's pattern alone cannot tell. Decoding `%2F` too only
 * refuses CORS to paths no route matches.
 */
function routedPath(url: string): string {
  const path = url.split("?")[0] ?? "";
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/**
 * Registers CORS for `origins` (["*"]: any origin). Register before authentication, so preflights
 * and the CORS headers of refusals (401, 429) come first, and before the routes: the methods a
 * preflight allows are those the public routes registered after it use (GET, HEAD, POST, and PATCH
 * and DELETE for webhook endpoints today), so a new route's method cannot be forgotten here.
 */
export async function installCors(app: FastifyInstance, origins: readonly string[]): Promise<void> {
  const methods = new Set<string>();
  app.addHook("onRoute", (route) => {
    if (isAdminPath(route.url)) return;
    // OPTIONS is the preflight itself (the plugin's own route), never a method asked for.
    for (const method of [route.method].flat()) if (method !== "OPTIONS") methods.add(method);
  });
  const options: FastifyCorsOptions = {
    origin: origins.includes("*") ? "*" : [...origins],
    // Read at each preflight (the set is complete once the server is ready), sorted for a stable answer.
    get methods() {
      return [...methods].sort();
    },
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
    credentials: false,
    strictPreflight: true,
  };
  const off: FastifyCorsOptions = { origin: false };
  await app.register(cors, {
    delegator: (request: FastifyRequest, done: (err: Error | null, options: FastifyCorsOptions) => void) => {
      const admin = isAdminPath(routedPath(request.url)) || isAdminPath(request.routeOptions.url ?? "");
      // An OPTIONS that is no preflight gets no CORS answer: it ends in the envelope's 404, not in
      // the plugin's plain-text 400.
      const notPreflight =
        request.method === "OPTIONS" &&
        (!request.headers.origin || !request.headers["access-control-request-method"]);
      done(null, admin || notPreflight ? off : options);
    },
  });
}
