#!/usr/bin/env node
/**
 * The `exportd` command: `serve` runs the service; `keys` manages API keys; `migrate` applies the
 * schema. Admin commands talk to the metadata store directly and work while the server runs.
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { issueApiKey } from "../admin.js";
import { type Config, ConfigError, loadConfig, type Role } from "../config/index.js";
import { isScope, SCOPES, type Scope } from "../domain/scopes.js";
import { createService, openStore } from "../service.js";

const USAGE = `Usage: exportd <command> [options]

Commands:
  serve [--role all|api|worker]             Run the service (default role: all)
  keys create --tenant NAME [--scopes a,b]  Create an API key; the key is the last line of output
  keys list --tenant NAME                   List a tenant's keys (prefix, last four, scopes, times)
  keys revoke PREFIX                        Revoke a key by its prefix
  migrate                                   Apply pending database migrations

Scopes: ${SCOPES.join(", ")} (all of them when --scopes is left out).
Configuration comes from the environment: PORT, EXPORTD_DATA_DIR, … (see docs/configuration.md).`;

class UsageError extends Error {}

async function serve(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: "string" } } });
  const role = (values.role ?? config.role) as Role;
  if (!["all", "api", "worker"].includes(role)) throw new UsageError(`--role must be all, api or worker.`);
  const logger = pino({ level: config.logLevel, base: { service: "exportd", role } });
  const service = await createService({ ...config, role }, logger);
  if (service.app) {
    await service.app.listen({ port: config.port, host: config.host });
    logger.info(
      `exportd is ready on ${config.publicUrl} — API docs at ${config.publicUrl}/docs; ` +
        "create a key with: npx exportd keys create --tenant demo",
    );
  }
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, "shutting down");
    service.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
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

async function keys(config: Config, args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { tenant: { type: "string" }, scopes: { type: "string" } },
  });
  const store = openStore(config);
  try {
    const now = Date.now();
    if (action === "create") {
      if (!values.tenant) throw new UsageError("keys create needs --tenant NAME.");
      const scopes = parseScopes(values.scopes);
      const issued = await issueApiKey(store, values.tenant, scopes, now);
      process.stderr.write(
        `Created a key for tenant "${issued.tenant.name}" (prefix ${issued.prefix}, scopes ${scopes.join(",")}).\n` +
          "Keep it now: only its hash is stored.\n",
      );
      process.stdout.write(`${issued.key}\n`);
      return;
    }
    if (action === "list") {
      if (!values.tenant) throw new UsageError("keys list needs --tenant NAME.");
      const tenant = await store.findTenantByName(values.tenant);
      if (!tenant) throw new UsageError(`No tenant "${values.tenant}".`);
      const iso = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString());
      for (const k of await store.listApiKeys(tenant.id)) {
        process.stdout.write(
          `${k.prefix}  …${k.last4}  ${k.scopes.join(",")}  created ${iso(k.createdAt)}  last used ${iso(k.lastUsedAt)}  revoked ${iso(k.revokedAt)}\n`,
        );
      }
      return;
    }
    if (action === "revoke") {
      const prefix = positionals[0];
      if (!prefix) throw new UsageError("keys revoke needs the key's PREFIX.");
      if (!(await store.revokeApiKey(prefix, now)))
        throw new UsageError(`No active key with prefix ${prefix}.`);
      process.stdout.write(`Revoked ${prefix}.\n`);
      return;
    }
    throw new UsageError(`Unknown keys command "${action ?? ""}".`);
  } finally {
    await store.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  const config = loadConfig();
  switch (command) {
    case "serve":
      return serve(config, args);
    case "keys":
      return keys(config, args);
    case "migrate": {
      const store = openStore(config);
      await store.close();
      process.stdout.write("Migrations applied.\n");
      return;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      throw new UsageError(`Unknown command "${command}".`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (
    err instanceof UsageError ||
    err instanceof ConfigError ||
    (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
  ) {
    process.stderr.write(`exportd: ${(err as Error).message}\n\n${err instanceof UsageError ? USAGE : ""}\n`);
    process.exit(2);
  }
  process.stderr.write(`exportd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
