/**
 * Starts exportd for a benchmark as real processes of the built CLI: either one process doing
 * everything (`workers: 0`, the embedded default) or an API process plus `workers` worker
 * processes on one metadata store (SQLite file or PostgreSQL) and one local object store, with a
 * tenant "bench" whose key and limits let a benchmark measure speed rather than its caps.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import { CLI, cli, createKey, type ServerProcess, startServer } from "../test/helpers/server-process.js";
import { tempDir } from "../test/helpers/service.js";

/** Flags for the API (or all-in-one) process, from BENCH_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof". */
export const benchNodeArgs = (): string[] => (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);

export interface Cluster {
  url: string;
  key: string;
  dataDir: string;
  env: Record<string, string>;
  /** The API (or all-in-one) process. */
  api: ServerProcess;
  /** Starts more worker processes (only when the API runs without an in-process worker). */
  addWorkers(count: number): void;
  /**
   * Kills every worker process with SIGKILL, as a crash would: what they were running stays
   * `running` under a lease nobody renews (and, with no worker left, nobody takes over).
   */
  killWorkers(): Promise<void>;
  /** Stops every process and removes the data folder (parts included). */
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
    nodeArgs: benchNodeArgs(),
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
    api,
    addWorkers,
    async killWorkers() {
      await Promise.all(workers.splice(0).map((w) => stopChild(w, "SIGKILL")));
    },
    async stop() {
      await Promise.all([api.stop(), ...workers.map((w) => stopChild(w))]);
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Stops a child process with `signal` and waits for its exit. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill(signal);
  await exited;
}
