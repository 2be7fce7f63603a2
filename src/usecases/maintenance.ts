/**
 * Maintenance mode's state: on when the config says so (EXPORTD_MAINTENANCE) or when `exportd
 * maintenance on` stored it in the database, which every process reads at most every two seconds.
 * The HTTP layer decides which requests it pauses (http/maintenance.ts); the CLI switches it.
 */
import type { AuditStamp, OperatorPort, TenancyPort } from "../metadata/types.js";
import { recordAudit } from "./audit.js";

/** The settings row that holds the stored state (JSON of MaintenanceState). */
export const MAINTENANCE_SETTING = "maintenance";
const CACHE_MS = 2000;

export interface MaintenanceState {
  enabled: boolean;
  retryAfterSeconds: number;
  message: string;
}

const OFF: MaintenanceState = { enabled: false, retryAfterSeconds: 0, message: "" };

/** The stored text as a state; anything unreadable is off (a bad row must not pause the API). */
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

/** The text parseMaintenance reads back. */
export function formatMaintenance(state: MaintenanceState): string {
  return JSON.stringify(state);
}

/** The stored state, read now. */
export async function readMaintenance(tenancy: TenancyPort): Promise<MaintenanceState> {
  return parseMaintenance(await tenancy.getSetting(MAINTENANCE_SETTING));
}

/** Stores the state every process reads; null switches stored maintenance off. */
export async function storeMaintenance(tenancy: TenancyPort, state: MaintenanceState | null): Promise<void> {
  await tenancy.setSetting(MAINTENANCE_SETTING, state ? formatMaintenance(state) : null);
}

/** Switches stored maintenance (null: off) for an operator and audits it; returns the state after. */
export async function switchMaintenance(
  port: TenancyPort & Pick<OperatorPort, "appendAudit">,
  state: MaintenanceState | null,
  stamp: AuditStamp,
): Promise<MaintenanceState> {
  const before = await readMaintenance(port);
  await storeMaintenance(port, state);
  const after = state ?? OFF;
  await recordAudit(port, stamp, {
    action: after.enabled ? "maintenance.on" : "maintenance.off",
    tenant: null,
    target: "maintenance",
    before,
    after,
  });
  return after;
}

/**
 * The state a process acts on: the configured one when it is on, else the stored one, read again
 * at most every two seconds (so `exportd maintenance on` reaches every process within that).
 */
export class MaintenanceSwitch {
  private cached: { state: MaintenanceState; at: number } | null = null;

  constructor(
    private readonly tenancy: TenancyPort,
    private readonly forced: MaintenanceState | null,
    private readonly clock: () => number,
  ) {}

  async current(): Promise<MaintenanceState> {
    if (this.forced?.enabled) return this.forced;
    const now = this.clock();
    if (!this.cached || now - this.cached.at >= CACHE_MS) {
      this.cached = { state: await readMaintenance(this.tenancy), at: now };
    }
    return this.cached.state;
  }
}
