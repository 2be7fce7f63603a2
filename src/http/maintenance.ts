/**
 * Maintenance mode: writes (POST, PUT, PATCH, DELETE under /v1) answer 503 `maintenance` with
 * Retry-After while reads and downloads keep working. It is on when the config says so
 * (EXPORTD_MAINTENANCE) or when `exportd maintenance on` stored it in the database, which every
 * process reads at most every two seconds.
 */
import type { FastifyInstance } from "fastify";
import { AppError } from "../domain/errors.js";
import type { MetadataStore } from "../metadata/types.js";

export const MAINTENANCE_SETTING = "maintenance";
const CACHE_MS = 2000;
const WRITE_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Whether maintenance pauses requests of this method to this path (or route pattern). */
export function pausedByMaintenance(method: string, path: string): boolean {
  return WRITE_METHODS.has(method) && path.startsWith("/v1/");
}

export interface MaintenanceState {
  enabled: boolean;
  retryAfterSeconds: number;
  message: string;
}

const OFF: MaintenanceState = { enabled: false, retryAfterSeconds: 0, message: "" };

export function parseMaintenance(value: string | null): MaintenanceState {
  if (value === null) return OFF;
  try {
    const parsed = JSON.parse(value) as Partial<MaintenanceState>;
    return {
      enabled: parsed.enabled === true,
      retryAfterSeconds: Number.isInteger(parsed.retryAfterSeconds)
        ? (parsed.retryAfterSeconds as number)
        : 300,
      message: typeof parsed.message === "string" ? parsed.message : "",
    };
  } catch {
    return OFF;
  }
}

export function installMaintenance(
  app: FastifyInstance,
  store: MetadataStore,
  forced: MaintenanceState | null,
  clock: () => number,
): void {
  let cached: { state: MaintenanceState; at: number } | null = null;
  const current = async (): Promise<MaintenanceState> => {
    if (forced?.enabled) return forced;
    const now = clock();
    if (!cached || now - cached.at >= CACHE_MS) {
      cached = { state: parseMaintenance(await store.getSetting(MAINTENANCE_SETTING)), at: now };
    }
    return cached.state;
  };
  app.addHook("onRequest", async (request) => {
    if (!pausedByMaintenance(request.method, request.url)) return;
    const state = await current();
    if (!state.enabled) return;
    throw new AppError(
      "maintenance",
      state.message || "exportd is in maintenance; reads and downloads work, writes are paused.",
      [],
      { "retry-after": String(state.retryAfterSeconds) },
    );
  });
}
