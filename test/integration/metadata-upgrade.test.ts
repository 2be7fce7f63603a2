/**
 * A database made by the per-engine schemas of earlier releases (SQLite versions 1–3, PostgreSQL 1
 * and 3, test/helpers/legacy-schema.ts) opens with the current store: migrations continue from
 * there, and what was in it reads back — on both engines.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import pg from "pg";
import { newId } from "../../src/domain/ids.js";
import { MIGRATIONS } from "../../src/metadata/migrations.js";
import { PostgresStore, SqliteStore } from "../../src/metadata/open.js";
import type { MetadataStore } from "../../src/metadata/types.js";
import { SAMPLE_REQUEST } from "../helpers/export-request.js";
import { POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS } from "../helpers/legacy-schema.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { tempDir } from "../helpers/service.js";

const tenantId = newId();
const queuedId = newId();
const succeededId = newId();
const request = JSON.stringify(SAMPLE_REQUEST);

/** What an installed exportd had written: a tenant, a queued export, a succeeded one with a part. */
const LEGACY_ROWS = [
  `INSERT INTO tenants (id, name, created_at) VALUES ('${tenantId}', 'legacy', 1)`,
  `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, run_after)
     VALUES ('${queuedId}', '${tenantId}', 'events', 'queued', '${request}', 10, 10)`,
  `INSERT INTO exports (id, tenant_id, dataset, status, request, created_at, run_after, progress_parts,
     progress_rows, attempts, takeovers, runs, expires_at)
     VALUES ('${succeededId}', '${tenantId}', 'events', 'succeeded', '${request}', 5, 5, 1, 7, 1, 2, 3, 999999)`,
  `INSERT INTO export_parts (export_id, idx, object_key, rows, bytes, sha256)
     VALUES ('${succeededId}', 0, 'k/part-000.r3.csv.gz', 7, 123, 'abc')`,
];

async function readsBack(store: MetadataStore): Promise<void> {
  const tenant = await store.getTenant(tenantId);
  assert.equal(tenant?.name, "legacy");
  assert.equal(tenant?.limits.maxQueued, 20, "the default plan of the old schema applies");
  const queued = await store.readExport(tenantId, queuedId);
  assert.equal(queued?.status, "queued");
  assert.equal(queued?.queuePosition, 1);
  assert.equal(queued?.request.dataset, "events");
  const done = await store.getExport(tenantId, succeededId);
  assert.deepEqual(
    [done?.status, done?.progress.rows, done?.attempts, done?.takeovers, done?.runs],
    ["succeeded", 7, 1, 2, 3],
  );
  assert.deepEqual(done?.parts, [
    { index: 0, objectKey: "k/part-000.r3.csv.gz", rows: 7, bytes: 123, sha256: "abc" },
  ]);
  // The queued count the upgrade derived counts the export already queued: a cap of 1 is full.
  const next = {
    ...(queued as NonNullable<typeof queued>),
    id: newId(),
    createdAt: 20,
    runAfter: 20,
    parts: [],
  };
  assert.deepEqual(await store.createExport(next, { maxQueued: 1, idempotency: null }), {
    kind: "queue_full",
    queued: 1,
  });
  assert.equal((await store.createExport(next, { maxQueued: 2, idempotency: null })).kind, "created");
  assert.equal((await store.readExport(tenantId, next.id))?.queuePosition, 2);
}

/** Only the migrations after version 3 run, once; then the old rows read back. */
async function migratesOnAndReadsBack(store: SqliteStore | PostgresStore): Promise<void> {
  try {
    const after3 = MIGRATIONS.filter((m) => m.version > 3).length;
    assert.equal(await store.migrate(), after3, "only the migrations after version 3 run");
    assert.equal(await store.migrate(), 0);
    await readsBack(store);
  } finally {
    await store.close();
  }
}

/** A SQLite file as an earlier release made it: these migrations applied and recorded, these rows in. */
function legacySqlite(migrations: typeof SQLITE_MIGRATIONS, inserts: string[]): string {
  const file = path.join(tempDir(), "meta.sqlite");
  const old = new Database(file);
  old.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  for (const m of migrations) {
    old.exec(m.sql);
    old.prepare("INSERT INTO schema_migrations VALUES (?, 0)").run(m.version);
  }
  for (const sql of inserts) old.exec(sql);
  old.close();
  return file;
}

describe("metadata databases of earlier releases", () => {
  let pgDatabase: TestDatabase;
  before(async () => {
    pgDatabase = await createTestDatabase();
  });
  after(() => pgDatabase.dispose());

  test("sqlite: versions 1–3 migrate on and read back", async () => {
    await migratesOnAndReadsBack(new SqliteStore(legacySqlite(SQLITE_MIGRATIONS, LEGACY_ROWS)));
  });

  test("postgres: versions 1 and 3 migrate on and read back", async () => {
    const old = new pg.Client({ connectionString: pgDatabase.url });
    await old.connect();
    try {
      await old.query(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
      );
      for (const m of POSTGRES_MIGRATIONS) {
        await old.query(m.sql);
        await old.query("INSERT INTO schema_migrations VALUES ($1, 0)", [m.version]);
      }
      for (const sql of LEGACY_ROWS) await old.query(sql);
    } finally {
      await old.end();
    }

    await migratesOnAndReadsBack(new PostgresStore(pgDatabase.url));
  });

  test("a database from before version 3 is refused, not guessed at", async () => {
    const store = new SqliteStore(legacySqlite(SQLITE_MIGRATIONS.slice(0, 1), []));
    try {
      await assert.rejects(store.migrate(), /records schema versions 1 but not 3/);
    } finally {
      await store.close();
    }
  });
});
