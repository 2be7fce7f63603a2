/**
 * Starts exportd for a benchmark as real processes of the built CLI: either one process doing
 * everything (`workers: 0`, the embedded default) or an API process plus `workers` worker
 * processes on one metadata store (SQLite file or PostgreSQL) and one local object store.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { CLI, cli, createKey, startServer } from "../test/helpers/server-process.js";
import { tempDir } from "../test/helpers/service.js";

export interface Cluster {
  url: string;
  key: string;
  dataDir: string;
  env: Record<string, string>;
  /** Starts more worker processes (only when the API runs without an in-process worker). */
  addWorkers(count: number): void;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Unset: SQLite in the data folder. */
  databaseUrl?: string;
  /** 0: one process with the API and an in-process worker; n: an API process and n worker processes. */
  workers: number;
  /** With `workers` 0: an API process alone; workers come later through addWorkers. */
  apiOnly?: boolean;
  env?: Record<string, string>;
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const dataDir = tempDir("exportd-bench-cluster-");
  const env: Record<string, string> = {
    EXPORTD_LOG_LEVEL: "warn",
    ...(options.databaseUrl ? { EXPORTD_DATABASE_URL: options.databaseUrl } : {}),
    ...options.env,
  };
  // Migrate once before several processes start on the store.
  cli(dataDir, ["migrate"], env);
  const api = await startServer({
    dataDir,
    env: { ...env, EXPORTD_ROLE: options.workers === 0 && !options.apiOnly ? "all" : "api" },
  });
  const workers: ChildProcess[] = [];
  const addWorkers = (count: number) => {
    for (let i = 0; i < count; i++) {
      workers.push(
        spawn(process.execPath, [CLI, "serve", "--role", "worker"], {
          env: { ...process.env, ...env, EXPORTD_DATA_DIR: dataDir },
          stdio: ["ignore", "ignore", "inherit"],
        }),
      );
    }
  };
  addWorkers(options.workers);
  const key = createKey(dataDir, "bench", undefined, env);
  // Room for every export a benchmark creates: this measures speed, not the tenant's caps.
  const limits = ["--max-running", "1000", "--max-queued", "1000000", "--requests-per-minute", "1000000"];
  cli(dataDir, ["tenants", "set", "bench", ...limits], env);
  return {
    url: api.url,
    key,
    dataDir,
    env,
    addWorkers,
    async stop() {
      await Promise.all([api.stop(), ...workers.map(stopChild)]);
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}
