#!/usr/bin/env node
/**
 * The `exportd` command: `serve` runs the service; keys, tenants, plans and maintenance are
 * administered directly in the metadata store (cli/admin-commands.ts); `migrate` applies the schema.
 */
import { parseArgs } from "node:util";
import { pino } from "pino";
import { type Config, ConfigError, loadConfig, type Role } from "../config/index.js";
import { SCOPES } from "../domain/scopes.js";
import type { MetadataStore } from "../metadata/types.js";
import { createService, openStore } from "../service.js";
import {
  keysCommand,
  maintenanceCommand,
  plansCommand,
  tenantsCommand,
  UsageError,
} from "./admin-commands.js";
import { CLIENT_USAGE, runClientCommand } from "./client-commands.js";

const USAGE = `Usage: exportd <command> [options]

Commands:
  serve [--role all|api|worker]              Run the service (default role: all)
  keys create --tenant NAME [--scopes a,b]   Create an API key (and the tenant if new); the key is the last line
  keys list --tenant NAME                    List a tenant's keys: prefix, last four, scopes, times
  keys revoke PREFIX                         Revoke a key
  keys rotate PREFIX                         Replace a key: new key, same scopes; the old one stops at once
  tenants list                               Tenants with their plan and limits (* = tenant override)
  tenants create NAME [--plan P] [limits]    Create a tenant
  tenants set NAME [--plan P] [limits]       Change a tenant's plan or limits (a limit of "plan" clears it)
  plans list                                 Plans and their limits
  plans set NAME [limits]                    Create or change a plan
  maintenance on [--retry-after S] [--message M] | off | status
                                             Writes answer 503 while on; reads keep working
  migrate                                    Apply pending database migrations

Limits: --max-running N (exports at once), --max-queued N (waiting exports),
        --requests-per-minute N (per key).

Scopes: ${SCOPES.join(", ")} (all of them when --scopes is left out).
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

const ADMIN = {
  keys: keysCommand,
  tenants: tenantsCommand,
  plans: plansCommand,
  maintenance: (store: MetadataStore, args: string[]) => maintenanceCommand(store, args),
};

async function withStore(config: Config, run: (store: MetadataStore) => Promise<void>): Promise<void> {
  const store = await openStore(config);
  try {
    await run(store);
  } finally {
    await store.close();
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
    case "keys":
    case "tenants":
    case "plans":
    case "maintenance":
      return withStore(config, (store) => ADMIN[command](store, args, Date.now()));
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
