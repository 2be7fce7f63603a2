/**
 * The operator's other commands: operator keys (create, list, revoke), the support views across
 * tenants (`support list|get|cancel`) and the audit log. The same use cases as the operator API;
 * writes are audited as `cli:<user>`.
 */
import { parseArgs } from "node:util";
import { EXPORT_STATUSES, type ExportStatus } from "../domain/export.js";
import { isOperatorScope, OPERATOR_SCOPES, type OperatorScope } from "../domain/operator-scopes.js";
import { listAudit, stampOf } from "../usecases/audit.js";
import { issueOperatorKey, listOperatorKeys, revokeOperatorKey } from "../usecases/operator-keys.js";
import {
  cancelAnyExport,
  getAnyExport,
  listAnyExports,
  type TenantExport,
} from "../usecases/support-exports.js";
import { type AdminContext, iso, out, UsageError } from "./admin-commands.js";

function parseOperatorScopes(text: string | undefined): OperatorScope[] {
  const scopes = (text ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = scopes.filter((s) => !isOperatorScope(s));
  if (unknown.length || scopes.length === 0) {
    throw new UsageError(
      `operator-keys create needs --scopes from ${OPERATOR_SCOPES.join(", ")}${unknown.length ? ` (unknown: ${unknown.join(", ")})` : ""}.`,
    );
  }
  return scopes as OperatorScope[];
}

function pageSize(raw: string | undefined): number {
  const n = Number(raw ?? "20");
  if (!Number.isInteger(n) || n < 1 || n > 100)
    throw new UsageError("--limit must be an integer from 1 to 100.");
  return n;
}

export async function operatorKeysCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { name: { type: "string" }, scopes: { type: "string" } },
  });
  switch (action) {
    case "create": {
      const scopes = parseOperatorScopes(values.scopes);
      const name = values.name ?? "";
      const { key, record } = await issueOperatorKey(ctx.store, name, scopes, stampOf(ctx.actor, ctx.now));
      process.stderr.write(
        `Created operator key ${record.prefix} (scopes ${scopes.join(",")}). Keep it now: only its hash is stored.\n`,
      );
      out(key);
      return;
    }
    case "list":
      for (const k of await listOperatorKeys(ctx.store)) {
        out(
          `${k.prefix}  …${k.last4}  ${k.scopes.join(",")}  ${k.name || "-"}  created ${iso(k.createdAt)}  ` +
            `last used ${iso(k.lastUsedAt)}  revoked ${iso(k.revokedAt)}`,
        );
      }
      return;
    case "revoke": {
      const prefix = positionals[0];
      if (!prefix) throw new UsageError("operator-keys revoke needs the key's PREFIX.");
      if (!(await revokeOperatorKey(ctx.store, prefix, stampOf(ctx.actor, ctx.now))))
        throw new UsageError(`No active operator key with prefix ${prefix}.`);
      out(`Revoked ${prefix}.`);
      return;
    }
    default:
      throw new UsageError(`Unknown operator-keys command "${action ?? ""}".`);
  }
}

function describeExport({ tenantName, record: e }: TenantExport): string {
  return (
    `${e.id}  ${tenantName ?? "-"}  ${e.dataset}  ${e.status}  rows ${e.progress.rows}  parts ${e.progress.parts}  ` +
    `created ${iso(e.createdAt)}${e.error ? `  error ${e.error.code}` : ""}`
  );
}

export async function supportCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      tenant: { type: "string" },
      status: { type: "string" },
      dataset: { type: "string" },
      limit: { type: "string" },
    },
  });
  const deps = async () => ({
    operator: ctx.store,
    exports: ctx.store,
    storage: await ctx.objects(),
    clock: Date.now,
  });
  const id = (): string => {
    const value = positionals[0];
    if (!value) throw new UsageError(`support ${action} needs the export's ID.`);
    return value;
  };
  switch (action) {
    case "list": {
      if (values.status !== undefined && !(EXPORT_STATUSES as readonly string[]).includes(values.status))
        throw new UsageError(`--status must be one of ${EXPORT_STATUSES.join(", ")}.`);
      const page = await listAnyExports(await deps(), {
        tenant: values.tenant,
        status: values.status as ExportStatus | undefined,
        dataset: values.dataset,
        limit: pageSize(values.limit),
      });
      for (const e of page.exports) out(describeExport(e));
      return;
    }
    case "get":
      out(JSON.stringify(await getAnyExport(await deps(), id()), null, 2));
      return;
    case "cancel": {
      const log = { info: () => undefined, warn: () => undefined };
      out(describeExport(await cancelAnyExport(await deps(), id(), stampOf(ctx.actor, ctx.now), log)));
      return;
    }
    default:
      throw new UsageError(`Unknown support command "${action ?? ""}".`);
  }
}

export async function auditCommand(ctx: AdminContext, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { values } = parseArgs({
    args: rest,
    options: { tenant: { type: "string" }, action: { type: "string" }, limit: { type: "string" } },
  });
  if (action !== "list") throw new UsageError(`Unknown audit command "${action ?? ""}".`);
  const page = await listAudit(ctx.store, {
    tenant: values.tenant,
    action: values.action,
    limit: pageSize(values.limit),
  });
  for (const e of page.entries) {
    out(
      `${iso(e.at)}  ${e.actor}  ${e.action}  ${e.target}  before ${JSON.stringify(e.before)}  after ${JSON.stringify(e.after)}`,
    );
  }
}
