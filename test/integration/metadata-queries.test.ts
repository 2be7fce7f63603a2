/**
 * What the metadata store's shared statements must keep apart, on both engines: a statement's named
 * parameters come from several records at once (the lease, the part, the progress), and a part's
 * own row count is not the export's progress.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import { newExport } from "../../src/domain/export.js";
import { newId } from "../../src/domain/ids.js";
import { PostgresStore, SqliteStore } from "../../src/metadata/open.js";
import { SAMPLE_REQUEST } from "../helpers/export-request.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { tempDir } from "../helpers/service.js";

let pgDatabase: TestDatabase;
before(async () => {
  pgDatabase = await createTestDatabase();
});
after(() => pgDatabase.dispose());

for (const engine of ["sqlite", "postgres"] as const) {
  test(`${engine}: a part's rows and the export's progress rows are stored apart`, async () => {
    const store =
      engine === "sqlite"
        ? new SqliteStore(path.join(tempDir(), "meta.sqlite"))
        : new PostgresStore(pgDatabase.url);
    try {
      await store.migrate();
      const tenant = await store.ensureTenant("parts", 1);
      const record = newExport({
        id: newId(),
        tenantId: tenant.id,
        request: SAMPLE_REQUEST,
        now: 1,
        estimatedRows: 9,
      });
      await store.insertExport(record);
      const lease = { owner: "w", now: 2, leaseMs: 1000 };
      assert.equal((await store.claimExport(lease))?.id, record.id);
      const part = { index: 1, objectKey: "k/part-001.r1.csv.gz", rows: 1800, bytes: 99, sha256: "x" };
      const progress = { percent: 60, rows: 4800, parts: 2 };
      assert.equal(await store.recordPart(record.id, lease, part, "c", progress), "ok");
      const read = await store.getExport(tenant.id, record.id);
      assert.deepEqual(read?.progress, progress);
      assert.deepEqual(read?.parts, [part]);
      assert.equal(read?.cursor, "c");
    } finally {
      await store.close();
    }
  });
}
