/**
 * Admin commands: keys, tenants, plans and maintenance. They talk to the metadata store directly
 * (not through the HTTP API), call the same use cases as the operator API (every write audited as
 * `cli:<user>`), and work while the server runs.
 */
import { parseArgs } from "node:util";
import { isScope, SCOPES, type Scope } from "../domain/scopes.js";
import type { Tenant, TenantLimits } from "../domain/tenant.js";
import type { AuditStamp, MetadataStore } from "../metadata/types.js";
import type { ObjectStore } from "../object-store/types.js";
import { issueTenantKey, listApiKeys, revokeTenantKey, rotateTenantKey } from "../usecases/api-keys.js";
import { stampOf } from "../usecases/audit.js";
import { readMaintenance, switchMaintenance } from "../usecases/maintenance.js";
import * as tenants from "../usecases/tenants.js";

export class UsageError extends Error {}

/** What an admin command runs with: the store, now, who runs it, and the object store on demand. */
export interface AdminContext {
  store: MetadataStore;
  now: number;
  /** The audit actor: `cli:<user>`. */
  actor: string;
  /** The configured object store (opened on first use: only deleting commands need it). */
  objects(): Promise<ObjectStore>;
}

export const out = (line: string) => process.stdout.write(`${line}\n`);
export const iso = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString());
const stamp = (ctx: AdminContext): AuditStamp => stampOf(ctx.actor, ctx.now);
/** The use cases' dependencies for a command that may cancel exports or delete files. */
async function tenantDeps(ctx: AdminContext) {
  return {
    operator: ctx.store,
    exports: ctx.store,
    storage: await ctx.objects(),
    clock: Date.now,
    log: {
      info: () => undefined,
      warn: (o: unknown, m?: string) => process.stderr.write(`${m ?? ""} ${JSON.stringify(o)}\n`),
    },
  };
}

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
    `requests-per-minute ${t.limits.requestsPerMinute}${mark("requestsPerMinute")}  created ${iso(t.createdAt)}` +
    (t.disabledAt === null ? "" : `  DISABLED ${iso(t.disabledAt)}`)
  );
}

export async function keysCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const { store } = ctx;
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
      // The CLI creates the tenant when it is new (the quick start's one command).
      const issued = await issueTenantKey(store, values.tenant, scopes, stamp(ctx), true);
      if (!issued) throw new Error("a tenant vanished while its key was issued");
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
      if (!(await revokeTenantKey(store, null, prefix, stamp(ctx))))
        throw new UsageError(`No active key with prefix ${prefix}.`);
      out(`Revoked ${prefix}.`);
      return;
    }
    case "rotate": {
      const prefix = positionals[0];
      if (!prefix) throw new UsageError("keys rotate needs the key's PREFIX.");
      const issued = await rotateTenantKey(store, null, prefix, stamp(ctx));
      if (!issued) throw new UsageError(`No active key with prefix ${prefix}.`);
      process.stderr.write(`Revoked ${prefix}; the new key (prefix ${issued.prefix}) has the same scopes.\n`);
      out(issued.key);
      return;
    }
    default:
      throw new UsageError(`Unknown keys command "${action ?? ""}".`);
  }
}

export async function tenantsCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const { store } = ctx;
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { plan: { type: "string" }, yes: { type: "boolean" }, ...LIMIT_OPTIONS },
  });
  const name = positionals[0];
  const named = (): string => {
    if (!name) throw new UsageError(`tenants ${action} needs the tenant's NAME.`);
    return name;
  };
  switch (action) {
    case "list":
      for (const t of await store.listTenants()) out(describeTenant(t));
      return;
    case "get":
      out(describeTenant(await tenants.getTenant({ operator: store }, named())));
      return;
    case "create":
    case "set": {
      const change = { plan: values.plan, overrides: limitOptions(values, true) };
      const tenant =
        action === "create"
          ? await tenants.createTenant({ operator: store }, named(), change, stamp(ctx))
          : await tenants.changeTenant({ operator: store }, named(), change, stamp(ctx));
      out(describeTenant(tenant));
      return;
    }
    case "disable": {
      const { tenant, canceled } = await tenants.disableTenant(await tenantDeps(ctx), named(), stamp(ctx));
      out(describeTenant(tenant));
      out(`Its keys are refused within a second; ${canceled.length} queued or running export(s) canceled.`);
      return;
    }
    case "enable":
      out(describeTenant(await tenants.enableTenant({ operator: store }, named(), stamp(ctx))));
      return;
    case "delete": {
      if (!values.yes)
        throw new UsageError(
          `tenants delete removes ${named()}'s exports, files and keys for good: add --yes.`,
        );
      const deleted = await tenants.deleteTenant(await tenantDeps(ctx), named(), stamp(ctx));
      out(`Deleted tenant ${name}: ${deleted.exports} export(s) with their files, ${deleted.keys} key(s).`);
      return;
    }
    default:
      throw new UsageError(`Unknown tenants command "${action ?? ""}".`);
  }
}

export async function plansCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const { store } = ctx;
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: LIMIT_OPTIONS });
  const describe = (p: { name: string; limits: TenantLimits }) =>
    `${p.name}  max-running ${p.limits.maxRunning}  max-queued ${p.limits.maxQueued}  requests-per-minute ${p.limits.requestsPerMinute}`;
  switch (action) {
    case "list":
      for (const p of await tenants.listPlans({ operator: store })) out(describe(p));
      return;
    case "set": {
      const name = positionals[0];
      if (!name) throw new UsageError("plans set needs the plan's NAME.");
      const given = limitOptions(values, false);
      const limits: Partial<TenantLimits> = {};
      for (const k of ["maxRunning", "maxQueued", "requestsPerMinute"] as const) {
        const v = given[k];
        if (typeof v === "number") limits[k] = v;
      }
      if (await store.getPlan(name)) {
        out(describe(await tenants.changePlan({ operator: store }, name, limits, stamp(ctx))));
        return;
      }
      if (
        limits.maxRunning === undefined ||
        limits.maxQueued === undefined ||
        limits.requestsPerMinute === undefined
      ) {
        throw new UsageError("A new plan needs --max-running, --max-queued and --requests-per-minute.");
      }
      const plan = { name, limits: limits as TenantLimits };
      out(describe(await tenants.createPlan({ operator: store }, plan, stamp(ctx))));
      return;
    }
    default:
      throw new UsageError(`Unknown plans command "${action ?? ""}".`);
  }
}

export async function maintenanceCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const { store } = ctx;
  const [action, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { "retry-after": { type: "string" }, message: { type: "string" } },
  });
  switch (action) {
    case "on": {
      const retryAfterSeconds = limitValue("retry-after", values["retry-after"] ?? "300", false) as number;
      const state = { enabled: true, retryAfterSeconds, message: values.message ?? "" };
      await switchMaintenance(store, state, stamp(ctx));
      out(
        `Maintenance on: writes answer 503 (Retry-After ${retryAfterSeconds}) within 2 seconds on every process.`,
      );
      return;
    }
    case "off":
      await switchMaintenance(store, null, stamp(ctx));
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
