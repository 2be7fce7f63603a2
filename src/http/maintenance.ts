/**
 * Maintenance mode at the HTTP edge: writes (POST, PUT, PATCH, DELETE under /v1) answer 503
 * `maintenance` with Retry-After while reads and downloads keep working. Whether it is on is the
 * use case's (usecases/maintenance.ts).
 */
import type { FastifyInstance } from "fastify";
import { AppError } from "../domain/errors.js";
import type { TenancyPort } from "../metadata/types.js";
import { type MaintenanceState, MaintenanceSwitch } from "../usecases/maintenance.js";

const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Whether maintenance pauses requests of this method to this path (or route pattern). */
export function pausedByMaintenance(method: string, path: string): boolean {
  return WRITE_METHODS.has(method) && path.startsWith("/v1/");
}

export function installMaintenance(
  app: FastifyInstance,
  tenancy: TenancyPort,
  forced: MaintenanceState | null,
  clock: () => number,
): void {
  const maintenance = new MaintenanceSwitch(tenancy, forced, clock);
  // Callback style: reads, the most requests by far, pass without a promise of their own.
  app.addHook("onRequest", (request, _reply, done) => {
    // The matched route's pattern, not the URL: `/%761/exports` is routed to `/v1/exports` too.
    // No route matched: the 404 follows whatever the path says.
    const route = request.routeOptions.url;
    if (route === undefined || !pausedByMaintenance(request.method, route)) return done();
    maintenance.current().then((state) => {
      if (!state.enabled) return done();
      done(
        new AppError(
          "maintenance",
          state.message || "exportd is in maintenance; reads and downloads work, writes are paused.",
          [],
          { "retry-after": String(state.retryAfterSeconds) },
        ),
      );
    }, done);
  });
}
