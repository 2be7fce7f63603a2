/**
 * Admin commands: keys, tenants, plans and maintenance. They talk to the metadata store directly
 * (not through the HTTP API) and work while the server runs.
 */
import { parseArgs } from "node:util";
import { isScope, SCOPES, type Scope } from "../domain/scopes.js";
import type { Tenant, TenantLimits } from "../domain/tenant.js";
import type { TenancyPort } from "../metadata/types.js";
import { issueApiKey, listApiKeys, revokeApiKey, rotateApiKey } from "../usecases/api-keys.js";
import { readMaintenance, storeMaintenance } from "../usecases/maintenance.js";

export class UsageError extends Error {}

const out = (line: string) => process.stdout.write(`${line}\n`);
const iso = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString());

function parseScopes(text: string | undefined): Scope[] {
  if (text === undefined) return [...SCOPES];
  const scopes = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = scopes.filter((s) => !isScope(s));
  if (unknown.length || scopes.length === 0) {
    throw new UsageError(
      `Unknown scope(s): ${unknown.join(", ") || "(none given)"}. Scopes: ${SCOPES.join(", ")}.`,
    );
  }
  return scopes as Scope[];
}

/** A limit option: a positive integer, or "plan" to clear a tenant's override. */
function limitValue(name: string, raw: string | undefined, allowPlan: boolean): number | null | undefined {
  if (raw === undefined) return undefined;
  if (allowPlan && raw === "plan") return null;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) {
    throw new UsageError(`--${name} must be an integer from 1 to 1000000${allowPlan ? ' or "plan"' : ""}.`);
  }
  return n;
}

const LIMIT_OPTIONS = {
  "max-running": { type: "string" },
  "max-queued": { type: "string" },
  "requests-per-minute": { type: "string" },
} as const;

function limitOptions(values: Record<string, string | boolean | undefined>, allowPlan: boolean) {
  const read = (name: keyof typeof LIMIT_OPTIONS) =>
    limitValue(name, values[name] as string | undefined, allowPlan);
  return {
    maxRunning: read("max-running"),
    maxQueued: read("max-queued"),
    requestsPerMinute: read("requests-per-minute"),
  };
}

function describeTenant(t: Tenant): string {
  const mark = (k: keyof TenantLimits) => (t.overrides[k] === undefined ? "" : "*");
  return (
    `${t.name}  plan ${t.plan}  max-running ${t.limits.maxRunning}${mark("maxRunning")}  ` +
    `max-queued ${t.limits.maxQueued}${mark("maxQueued")}  ` +
    `requests-per-minute ${t.limits.requestsPerMinute}${mark("requestsPerMinute")}  created ${iso(t.createdAt)}`
  );
}

async function requirePlan(store: TenancyPort, plan: string | undefined): Promise<void> {
  if (plan !== undefined && !(await store.getPlan(plan))) {
    throw new UsageError(`No plan "${plan}". Create it with: exportd plans set ${plan} --max-running N …`);
  }
}

export async function keysCommand(store: TenancyPort, args: string[], now: number): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { tenant: { type: "string" }, scopes: { type: "string" } },
  });
  switch (action) {
    case "create": {
      if (!values.tenant) throw new UsageError("keys create needs --tenant NAME.");
      const scopes = parseScopes(values.scopes);
      const issued = await issueApiKey(store, values.tenant, scopes, now);
      process.stderr.write(
        `Created a key for tenant "${issued.tenant.name}" (prefix ${issued.prefix}, scopes ${scopes.join(",")}).\n` +
          "Keep it now: only its hash is stored.\n",
      );
      out(issued.key);
      return;
    }
    case "list": {
      if (!values.tenant) throw new UsageError("keys list needs --tenant NAME.");
      const keys = await listApiKeys(store, values.tenant);
      if (!keys) throw new UsageError(`No tenant "${values.tenant}".`);
      for (const k of keys) {
        out(
          `${k.prefix}  …${k.last4}  ${k.scopes.join(",")}  created ${iso(k.createdAt)}  ` +
            `last used ${iso(k.lastUsedAt)}  revoked ${iso(k.revokedAt)}`,
        );
      }
      return;
    }
    case "revoke": {
      const prefix = positionals[0];
      if (!prefix) throw new UsageError("keys revoke needs the key's PREFIX.");
      if (!(await revokeApiKey(store, prefix, now)))
        throw new UsageError(`No active key with prefix ${prefix}.`);
      out(`Revoked ${prefix}.`);
      return;
    }
    case "rotate": {
      const prefix = positionals[0];
      if (!prefix) throw new UsageError("keys rotate needs the key's PREFIX.");
      const issued = await rotateApiKey(store, prefix, now);
      if (!issued) throw new UsageError(`No active key with prefix ${prefix}.`);
      process.stderr.write(`Revoked ${prefix}; the new key (prefix ${issued.prefix}) has the same scopes.\n`);
      out(issued.key);
      return;
    }
    default:
      throw new UsageError(`Unknown keys command "${action ?? ""}".`);
  }
}

export async function tenantsCommand(store: TenancyPort, args: string[], now: number): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { plan: { type: "string" }, ...LIMIT_OPTIONS },
  });
  const name = positionals[0];
  switch (action) {
    case "list":
      for (const t of await store.listTenants()) out(describeTenant(t));
      return;
    case "create":
    case "set": {
      if (!name) throw new UsageError(`tenants ${action} needs the tenant's NAME.`);
      await requirePlan(store, values.plan);
      if (action === "create") await store.ensureTenant(name, now, values.plan);
      else if (!(await store.findTenantByName(name))) throw new UsageError(`No tenant "${name}".`);
      const tenant = await store.updateTenant(name, {
        plan: values.plan,
        overrides: limitOptions(values, true),
      });
      out(describeTenant(tenant as Tenant));
      return;
    }
    default:
      throw new UsageError(`Unknown tenants command "${action ?? ""}".`);
  }
}

export async function plansCommand(store: TenancyPort, args: string[], now: number): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: LIMIT_OPTIONS });
  const describe = (p: { name: string; limits: TenantLimits }) =>
    `${p.name}  max-running ${p.limits.maxRunning}  max-queued ${p.limits.maxQueued}  requests-per-minute ${p.limits.requestsPerMinute}`;
  switch (action) {
    case "list":
      for (const p of await store.listPlans()) out(describe(p));
      return;
    case "set": {
      const name = positionals[0];
      if (!name) throw new UsageError("plans set needs the plan's NAME.");
      const current = await store.getPlan(name);
      const given = limitOptions(values, false);
      const limits = {
        maxRunning: given.maxRunning ?? current?.limits.maxRunning,
        maxQueued: given.maxQueued ?? current?.limits.maxQueued,
        requestsPerMinute: given.requestsPerMinute ?? current?.limits.requestsPerMinute,
      };
      if (limits.maxRunning == null || limits.maxQueued == null || limits.requestsPerMinute == null) {
        throw new UsageError("A new plan needs --max-running, --max-queued and --requests-per-minute.");
      }
      const plan = { name, limits: limits as TenantLimits };
      await store.upsertPlan(plan, now);
      out(describe(plan));
      return;
    }
    default:
      throw new UsageError(`Unknown plans command "${action ?? ""}".`);
  }
}

export async function maintenanceCommand(store: TenancyPort, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { "retry-after": { type: "string" }, message: { type: "string" } },
  });
  switch (action) {
    case "on": {
      const retryAfterSeconds = limitValue("retry-after", values["retry-after"] ?? "300", false) as number;
      const state = { enabled: true, retryAfterSeconds, message: values.message ?? "" };
      await storeMaintenance(store, state);
      out(
        `Maintenance on: writes answer 503 (Retry-After ${retryAfterSeconds}) within 2 seconds on every process.`,
      );
      return;
    }
    case "off":
      await storeMaintenance(store, null);
      out("Maintenance off.");
      return;
    case "status": {
      const state = await readMaintenance(store);
      out(state.enabled ? `on (Retry-After ${state.retryAfterSeconds}) ${state.message}`.trim() : "off");
      return;
    }
    default:
      throw new UsageError(`Unknown maintenance command "${action ?? ""}".`);
  }
}
