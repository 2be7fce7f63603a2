#!/usr/bin/env node
/**
 * The `exportd` command: `serve` runs the service; keys, tenants, plans and maintenance are
 * administered directly in the metadata store (cli/admin-commands.ts); `migrate` applies the schema.
 */
import os from "node:os";
import { parseArgs } from "node:util";
import { pino } from "pino";
import { type Config, ConfigError, loadConfig, type Role } from "../config/index.js";
import { AppError } from "../domain/errors.js";
import { OPERATOR_SCOPES } from "../domain/operator-scopes.js";
import { SCOPES } from "../domain/scopes.js";
import type { ObjectStore } from "../object-store/types.js";
import { createService, openObjectStore, openStore, webhookSecretsKey } from "../service.js";
import { actors } from "../usecases/audit.js";
import {
  type AdminContext,
  keysCommand,
  maintenanceCommand,
  plansCommand,
  tenantsCommand,
  UsageError,
} from "./admin-commands.js";
import { CLIENT_USAGE, runClientCommand } from "./client-commands.js";
import { auditCommand, operatorKeysCommand, supportCommand } from "./operator-commands.js";
import { WEBHOOKS_USAGE, webhooksCommand } from "./webhook-commands.js";

const USAGE = `Usage: exportd <command> [options]

Commands:
  serve [--role all|api|worker]              Run the service (default role: all)
  keys create --tenant NAME [--scopes a,b]   Create an API key (and the tenant if new); the key is the last line
  keys list --tenant NAME                    List a tenant's keys: prefix, last four, scopes, times
  keys revoke PREFIX                         Revoke a key
  keys rotate PREFIX                         Replace a key: new key, same scopes; the old one stops at once
  tenants list                               Tenants with their plan and limits (* = tenant override)
  tenants get NAME                           One tenant
  tenants create NAME [--plan P] [limits]    Create a tenant
  tenants set NAME [--plan P] [limits]       Change a tenant's plan or limits (a limit of "plan" clears it)
  tenants disable NAME | enable NAME         Refuse (or allow again) every key of the tenant; disable
                                             cancels its queued and running exports
  tenants delete NAME --yes                  Delete the tenant, its exports, files and keys for good
  plans list                                 Plans and their limits
  plans set NAME [limits]                    Create or change a plan
  maintenance on [--retry-after S] [--message M] | off | status
                                             Writes answer 503 while on; reads keep working
  operator-keys create --scopes a,b [--name N]
                                             Create an operator key (exo_…) for the operator API; last line
  operator-keys list | revoke PREFIX         List or revoke operator keys
  support list [--tenant T] [--status S] [--dataset D] [--limit N]
                                             Exports of any tenant, newest first
  support get ID | cancel ID                 One export of any tenant; cancel it
  audit list [--tenant T] [--action A] [--limit N]
                                             Operator writes, newest first
${WEBHOOKS_USAGE}
  migrate                                    Apply pending database migrations

Limits: --max-running N (exports at once), --max-queued N (waiting exports),
        --requests-per-minute N (per key).

Scopes: ${SCOPES.join(", ")} (all of them when --scopes is left out).
Operator scopes: ${OPERATOR_SCOPES.join(", ")}.
Every write of these commands goes to the audit log as cli:<your user name>.
Configuration comes from the environment: PORT, EXPORTD_DATA_DIR, … (see docs/configuration.md).

${CLIENT_USAGE}`;

async function serve(config: Config, args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { role: { type: "string" } } });
  const role = (values.role ?? config.role) as Role;
  if (!["all", "api", "worker"].includes(role)) throw new UsageError(`--role must be all, api or worker.`);
  const logger = pino({ level: config.logLevel, base: { service: "exportd", role } });
  // A promise nobody awaited that fails (a driver's background error) is a bug to log, not a
  // reason to drop every request and running export of this process.
  process.on("unhandledRejection", (err) =>
    logger.error({ err }, "unhandled promise rejection; exportd keeps running"),
  );
  const service = await createService({ ...config, role }, logger);
  if (service.adminApp && config.admin.port !== null) {
    await service.adminApp.listen({ port: config.admin.port, host: config.admin.host });
    const address = service.adminApp.server.address();
    const port = typeof address === "object" && address ? address.port : config.admin.port;
    logger.info({ admin_port: port }, `the operator API listens on ${config.admin.host}:${port}`);
  }
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

const ADMIN: Record<string, (ctx: AdminContext, args: string[]) => Promise<void>> = {
  keys: keysCommand,
  tenants: tenantsCommand,
  plans: plansCommand,
  maintenance: maintenanceCommand,
  "operator-keys": operatorKeysCommand,
  // The operator's support views of any tenant's exports ("exports" is the client's command).
  support: supportCommand,
  audit: auditCommand,
};

/** The OS user running the CLI, for the audit log. */
function cliUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? "unknown";
  }
}

/**
 * Runs one administrative command on the metadata store (and the object store, opened only when the
 * command asks for it), with the CLI user as the audited actor; closes both after it, even on error.
 */
async function withAdmin(config: Config, run: (ctx: AdminContext) => Promise<void>): Promise<void> {
  const store = await openStore(config);
  const opened: { objects: ObjectStore | null } = { objects: null };
  try {
    await run({
      store,
      now: Date.now(),
      actor: actors.cli(cliUser()),
      objects: async () => {
        opened.objects ??= (await openObjectStore(config)).storage;
        return opened.objects;
      },
    });
  } finally {
    await store.close();
    await opened.objects?.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  // The client commands talk to a server over HTTP: no server configuration is read for them.
  if (command === "export" || command === "exports") {
    process.exitCode = await runClientCommand(command, args);
    return;
  }
  const config = loadConfig();
  switch (command) {
    case "serve":
      return serve(config, args);
    case "webhooks":
      return withAdmin(config, (ctx) =>
        webhooksCommand(ctx.store, args, config, webhookSecretsKey(config), ctx.actor),
      );
    case "migrate": {
      const store = await openStore(config);
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
    default: {
      const run = Object.hasOwn(ADMIN, command) ? ADMIN[command] : undefined;
      if (!run) throw new UsageError(`Unknown command "${command}".`);
      return withAdmin(config, (ctx) => run(ctx, args));
    }
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
  // What the operator API would answer with a code: the message says what to do.
  if (err instanceof AppError) {
    process.stderr.write(`exportd: ${err.message} (${err.code})\n`);
    process.exit(1);
  }
  process.stderr.write(`exportd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
