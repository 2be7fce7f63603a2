/**
 * One contract, every metadata store: SQLite (a real file) and PostgreSQL (EXPORTD_TEST_DATABASE_URL,
 * or a throwaway server started by the harness) must behave the same, or one of them drifts.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import { type ExportRecord, newExport, STATUS } from "../../src/domain/export.js";
import { newId } from "../../src/domain/ids.js";
import { PostgresStore, SqliteStore } from "../../src/metadata/open.js";
import type { Lease, MetadataStore } from "../../src/metadata/types.js";
import { SAMPLE_REQUEST as request } from "../helpers/export-request.js";
import { createTestDatabase, type TestDatabase } from "../helpers/postgres.js";
import { tempDir } from "../helpers/service.js";

let pgDatabase: TestDatabase;
before(async () => {
  pgDatabase = await createTestDatabase();
});
after(() => pgDatabase.dispose());

const sqliteFile = path.join(tempDir(), "meta.sqlite");
/** Each engine: how to open its store, and how to open a second one on the same database (another process). */
const stores: [string, () => Promise<MetadataStore>, () => MetadataStore][] = [
  [
    "sqlite",
    async () => {
      const store = new SqliteStore(sqliteFile);
      store.migrate();
      return store;
    },
    () => new SqliteStore(sqliteFile),
  ],
  [
    "postgres",
    async () => {
      const store = new PostgresStore(pgDatabase.url);
      await store.migrate();
      assert.equal(await store.migrate(), 0, "migrations apply once");
      return store;
    },
    () => new PostgresStore(pgDatabase.url),
  ],
];

for (const [name, open, openAnother] of stores) {
  describe(`metadata store contract: ${name}`, () => {
    let store: MetadataStore;
    let t = 1_000_000;
    const queued = async (tenantId: string, at = t++): Promise<ExportRecord> => {
      const record = newExport({ id: newId(), tenantId, request, now: at, estimatedRows: 10 });
      await store.insertExport(record);
      return record;
    };
    const lease = (owner: string, now: number, leaseMs = 1000): Lease => ({ owner, now, leaseMs });

    before(async () => {
      store = await open();
    });
    after(() => store.close());
    // Claims are global: finish whatever earlier tests left runnable, so each test sees only its own.
    beforeEach(async () => {
      const far = lease("drain", 9_000_000_000_000);
      for (let e = await store.claimExport(far); e; e = await store.claimExport(far)) {
        await store.failExport(e.id, far, { code: "internal_error", message: "drained", retryable: true });
      }
    });

    test("who created an export is kept by both inserts and read back by every read", async () => {
      const tenant = await store.ensureTenant(`${name}-creators`, 1);
      const viaInsert = newExport({
        id: newId(),
        tenantId: tenant.id,
        request,
        now: t++,
        estimatedRows: null,
        createdBy: "key:abcdefghij",
      });
      await store.insertExport(viaInsert);
      const viaCreate = newExport({
        id: newId(),
        tenantId: tenant.id,
        request,
        now: t++,
        estimatedRows: null,
        createdBy: "token:auth0|64f0c2",
      });
      assert.equal(
        (await store.createExport(viaCreate, { maxQueued: 10, idempotency: null })).kind,
        "created",
      );
      const anonymous = newExport({
        id: newId(),
        tenantId: tenant.id,
        request,
        now: t++,
        estimatedRows: null,
      });
      await store.insertExport(anonymous);
      assert.equal((await store.getExport(tenant.id, viaInsert.id))?.createdBy, "key:abcdefghij");
      assert.equal((await store.readExport(tenant.id, viaCreate.id))?.createdBy, "token:auth0|64f0c2");
      assert.equal((await store.readExport(tenant.id, viaCreate.id))?.queuePosition, 2);
      assert.equal((await store.getExport(tenant.id, anonymous.id))?.createdBy, null);
      const listed = await store.listExports(tenant.id, { limit: 10 });
      assert.deepEqual(
        listed.map((e) => e.createdBy),
        [null, "token:auth0|64f0c2", "key:abcdefghij"],
      );
    });

    test("tenants, plans and limit overrides", async () => {
      const a = await store.ensureTenant(`${name}-acme`, 1);
      assert.equal((await store.ensureTenant(`${name}-acme`, 2)).id, a.id, "ensure is idempotent");
      assert.deepEqual(a.limits, { maxRunning: 2, maxQueued: 20, requestsPerMinute: 600 });
      await store.upsertPlan(
        { name: `${name}-pro`, limits: { maxRunning: 5, maxQueued: 50, requestsPerMinute: 900 } },
        1,
      );
      const pro = await store.updateTenant(`${name}-acme`, {
        plan: `${name}-pro`,
        overrides: { maxQueued: 7 },
      });
      assert.deepEqual(pro?.limits, { maxRunning: 5, maxQueued: 7, requestsPerMinute: 900 });
      assert.deepEqual(pro?.overrides, { maxQueued: 7 });
      const cleared = await store.updateTenant(`${name}-acme`, { overrides: { maxQueued: null } });
      assert.equal(cleared?.limits.maxQueued, 50);
      assert.ok((await store.listPlans()).some((p) => p.name === "default"));
      assert.equal((await store.getTenant(a.id))?.name, `${name}-acme`);
      await store.setSetting("x", "1");
      assert.equal(await store.getSetting("x"), "1");
      await store.setSetting("x", null);
      assert.equal(await store.getSetting("x"), null);
    });

    test("API keys: found by prefix, revoked once", async () => {
      const tenant = await store.ensureTenant(`${name}-keys`, 1);
      const key = {
        id: newId(),
        tenantId: tenant.id,
        prefix: `${name}pfx`,
        hash: "h",
        last4: "abcd",
        scopes: ["exports:read" as const],
        createdAt: 5,
        lastUsedAt: null,
        revokedAt: null,
      };
      await store.insertApiKey(key);
      assert.deepEqual(await store.findApiKeyByPrefix(key.prefix), key);
      await store.touchApiKey(key.id, 9);
      assert.equal((await store.listApiKeys(tenant.id))[0]?.lastUsedAt, 9);
      assert.equal(await store.revokeApiKey(key.prefix, 10), true);
      assert.equal(await store.revokeApiKey(key.prefix, 11), false);
      assert.equal((await store.findApiKeyByPrefix(key.prefix))?.revokedAt, 10);
    });

    test("create: queue cap, idempotency replay and conflict, per tenant", async () => {
      const tenant = await store.ensureTenant(`${name}-create`, 1);
      const idem = { key: "k1", requestHash: "h1" };
      const mk = () =>
        newExport({ id: newId(), tenantId: tenant.id, request, now: t++, estimatedRows: null });
      const first = await store.createExport(mk(), { maxQueued: 2, idempotency: idem });
      assert.equal(first.kind, "created");
      const replay = await store.createExport(mk(), { maxQueued: 2, idempotency: idem });
      assert.equal(replay.kind, "replayed");
      assert.equal(
        replay.kind === "replayed" && replay.record.id,
        first.kind === "created" && first.record.id,
      );
      assert.equal(
        (await store.createExport(mk(), { maxQueued: 2, idempotency: { key: "k1", requestHash: "other" } }))
          .kind,
        "idempotency_conflict",
      );
      assert.equal((await store.createExport(mk(), { maxQueued: 2, idempotency: null })).kind, "created");
      assert.deepEqual(await store.createExport(mk(), { maxQueued: 2, idempotency: null }), {
        kind: "queue_full",
        queued: 2,
      });
    });

    test("create: concurrent creates with one key make one export", async () => {
      const tenant = await store.ensureTenant(`${name}-race`, 1);
      const outcomes = await Promise.all(
        Array.from({ length: 10 }, () =>
          store.createExport(
            newExport({ id: newId(), tenantId: tenant.id, request, now: t, estimatedRows: null }),
            {
              maxQueued: 100,
              idempotency: { key: "same", requestHash: "h" },
            },
          ),
        ),
      );
      assert.equal(outcomes.filter((o) => o.kind === "created").length, 1);
      assert.equal(outcomes.filter((o) => o.kind === "replayed").length, 9);
      assert.equal((await store.listExports(tenant.id, { limit: 50 })).length, 1);
    });

    test("claim: leases, take-over, and a lost lease changes nothing", async () => {
      const tenant = await store.ensureTenant(`${name}-lease`, 1);
      const e = await queued(tenant.id, 10);
      const base = 100_000_000;
      const a = lease("a", base);
      const claimed = await store.claimExport(a);
      assert.equal(claimed?.id, e.id);
      assert.equal(claimed?.takenOver, false);
      // The export job checks each status change against the claimed record's status.
      assert.equal(claimed?.status, STATUS.running, "a claim answers the export as running");
      assert.equal(await store.claimExport(lease("b", base + 500)), null, "lease still valid");
      assert.equal(await store.heartbeat(e.id, { ...a, now: base + 900 }), "ok");
      const b = lease("b", base + 2000);
      const taken = await store.claimExport(b);
      assert.equal(taken?.id, e.id);
      assert.equal(taken?.takenOver, true);
      assert.deepEqual(
        { attempts: taken?.attempts, takeovers: taken?.takeovers, runs: taken?.runs },
        { attempts: 1, takeovers: 1, runs: 2 },
        "a takeover is no failed attempt; it is counted apart, and is a new run",
      );
      const part = { index: 0, objectKey: "k", rows: 3, bytes: 30, sha256: "s" };
      assert.equal(await store.heartbeat(e.id, { ...a, now: base + 2001 }), "lost");
      assert.equal(await store.recordPart(e.id, a, part, "c0", { percent: 9, rows: 3, parts: 1 }), "lost");
      assert.equal(await store.completeExport(e.id, a, 1), "lost");
      assert.equal(await store.recordPart(e.id, b, part, "c0", { percent: 50, rows: 3, parts: 1 }), "ok");
      assert.equal(await store.updateProgress(e.id, b, { percent: 10, rows: 1, parts: 0 }, 99), "ok");
      const view = await store.getExport(tenant.id, e.id);
      assert.deepEqual(view?.progress, { percent: 50, rows: 3, parts: 1 }, "progress never moves back");
      assert.equal(view?.estimatedRows, 99);
      assert.equal(view?.cursor, "c0");
      assert.deepEqual(view?.parts, [part]);
      assert.equal(view?.takeovers, 0, "a published part ends a run of takeovers");
      assert.equal(await store.getExport("another-tenant", e.id), null);
      assert.equal(await store.completeExport(e.id, b, 777), "ok");
      const done = await store.getExport(tenant.id, e.id);
      assert.equal(done?.status, "succeeded");
      assert.equal(done?.expiresAt, 777);
      assert.equal(done?.progress.percent, 100, "a finished export is complete, whatever the last tick said");
    });

    test("status read: unchanged while the row and the queue position are", async () => {
      const tenant = await store.ensureTenant(`${name}-version`, 1);
      const now = 500_000_000;
      const e1 = await queued(tenant.id, now - 2);
      const e2 = await queued(tenant.id, now - 1);
      const first = await store.readExport(tenant.id, e2.id);
      assert.equal(first?.queuePosition, 2);
      assert.equal(await store.readExport(tenant.id, e2.id, first?.version), "unchanged");
      assert.equal(await store.readExport("another-tenant", e2.id, first?.version), null);
      const l = lease("w", now, 600_000);
      assert.equal((await store.claimExport(l))?.id, e1.id);
      const moved = await store.readExport(tenant.id, e2.id, first?.version);
      assert.ok(moved !== "unchanged" && moved !== null, "the place in the queue moved");
      assert.equal(moved.queuePosition, 1);
      assert.equal((await store.claimExport(l))?.id, e2.id);
      const running = await store.readExport(tenant.id, e2.id, moved.version);
      assert.ok(running !== "unchanged" && running !== null, "claimed");
      assert.equal(running.status, STATUS.running);
      assert.equal(running.queuePosition, null);
      assert.equal(await store.heartbeat(e2.id, { ...l, now: now + 1 }), "ok");
      assert.equal(
        await store.readExport(tenant.id, e2.id, running.version),
        "unchanged",
        "a heartbeat is no change",
      );
      assert.equal(await store.updateProgress(e2.id, l, { percent: 5, rows: 10, parts: 0 }, 100), "ok");
      const progressed = await store.readExport(tenant.id, e2.id, running.version);
      assert.ok(progressed !== "unchanged" && progressed !== null);
      assert.deepEqual(progressed.progress, { percent: 5, rows: 10, parts: 0 });
      const part = { index: 0, objectKey: "k", rows: 10, bytes: 30, sha256: "s" };
      assert.equal(await store.recordPart(e2.id, l, part, "c1", { percent: 5, rows: 10, parts: 1 }), "ok");
      const withPart = await store.readExport(tenant.id, e2.id, progressed.version);
      assert.ok(withPart !== "unchanged" && withPart !== null, "a recorded part changes the row");
      assert.deepEqual(withPart.parts, [part]);
      assert.equal(await store.readExport(tenant.id, e2.id, withPart.version), "unchanged");

      // A write by another process (its own connection) shows in the next read too.
      const other = openAnother();
      try {
        const progress = { percent: 60, rows: 12, parts: 1 };
        assert.equal(await other.updateProgress(e2.id, l, progress, 100), "ok");
        // SQLite asks for others' commits once per turn of the event loop (SqliteDriver.changeMark).
        await new Promise((resolve) => setImmediate(resolve));
        const seen = await store.readExport(tenant.id, e2.id, withPart.version);
        assert.ok(seen !== "unchanged" && seen !== null, "another connection's commit is seen");
        assert.deepEqual(seen.progress, progress);
        assert.equal(await store.readExport(tenant.id, e2.id, seen.version), "unchanged");
      } finally {
        await other.close();
      }
      const unknown = await store.readExport(tenant.id, e1.id, withPart.version);
      assert.ok(
        unknown !== "unchanged" && unknown?.id === e1.id,
        "a version vouches for its own export only",
      );
    });

    test("claim: many workers at once take each export exactly once", async () => {
      const tenant = await store.ensureTenant(`${name}-many`, 1);
      await store.updateTenant(`${name}-many`, { overrides: { maxRunning: 1000 } });
      const ids = new Set<string>();
      for (let i = 0; i < 30; i++) ids.add((await queued(tenant.id, 200 + i)).id);
      const now = 200_000_000;
      const claimedBy = new Map<string, string>();
      await Promise.all(
        Array.from({ length: 6 }, async (_, w) => {
          for (;;) {
            const got = await store.claimExport(lease(`w${w}`, now, 600_000));
            if (!got) return;
            assert.equal(claimedBy.has(got.id), false, `${got.id} claimed twice`);
            claimedBy.set(got.id, `w${w}`);
          }
        }),
      );
      for (const id of ids) assert.ok(claimedBy.has(id), `${id} never claimed`);
    });

    test("claim: concurrent claims never pass a tenant's max_running", async () => {
      const capped = await store.ensureTenant(`${name}-capped`, 1);
      await store.updateTenant(`${name}-capped`, { overrides: { maxRunning: 2 } });
      for (let i = 0; i < 8; i++) await queued(capped.id, 700 + i);
      const now = 250_000_000;
      const got = await Promise.all(
        Array.from({ length: 8 }, (_, w) => store.claimExport(lease(`c${w}`, now, 600_000))),
      );
      assert.equal(got.filter((e) => e?.tenantId === capped.id).length, 2);
    });

    test("claim: a tenant at max_running waits; others pass", async () => {
      const busy = await store.ensureTenant(`${name}-busy`, 1);
      await store.updateTenant(`${name}-busy`, { overrides: { maxRunning: 1 } });
      const idle = await store.ensureTenant(`${name}-idle`, 1);
      const now = 300_000_000;
      await queued(busy.id, now - 3);
      await queued(busy.id, now - 2);
      const other = await queued(idle.id, now - 1);
      const first = await store.claimExport(lease("x", now, 600_000));
      assert.equal(first?.tenantId, busy.id);
      const second = await store.claimExport(lease("y", now, 600_000));
      assert.equal(second?.id, other.id);
    });

    test("requeue, fail, cancel, queue positions and counts", async () => {
      const tenant = await store.ensureTenant(`${name}-life`, 1);
      await store.updateTenant(`${name}-life`, { overrides: { maxRunning: 100 } });
      const now = 400_000_000;
      const e1 = await queued(tenant.id, now - 5);
      const e2 = await queued(tenant.id, now - 4);
      const e3 = await queued(tenant.id, now - 3);
      assert.equal(await store.queuePosition(tenant.id, e3.id), 3);
      const l = lease("w", now, 600_000);
      assert.equal((await store.claimExport(l))?.id, e1.id);
      assert.equal(await store.queuePosition(tenant.id, e3.id), 2);
      assert.equal(await store.queuePosition(tenant.id, e1.id), null);
      const error = { code: "internal_error" as const, message: "m", retryable: true };
      assert.equal(await store.requeueExport(e1.id, l, now + 60_000, error), "ok");
      const back = await store.getExport(tenant.id, e1.id);
      assert.equal(back?.status, "queued");
      assert.deepEqual(back?.error, error);
      assert.equal(back?.attempts, 1, "a failure counts as an attempt");
      assert.equal(back?.runs, 1);
      assert.equal((await store.claimExport(l))?.id, e2.id, "e1 waits for its back-off");
      assert.equal(await store.failExport(e2.id, l, { ...error, retryable: false }), "ok");
      assert.equal((await store.getExport(tenant.id, e2.id))?.error?.retryable, false);
      const canceled = await store.cancelExport(tenant.id, e3.id, now);
      assert.equal(canceled?.canceled, true);
      assert.equal((await store.cancelExport(tenant.id, e3.id, now))?.canceled, false);
      assert.equal(await store.cancelExport("nobody", e3.id, now), null);
      const counts = await store.countExportsByStatus();
      assert.ok((counts.failed ?? 0) >= 1 && (counts.canceled ?? 0) >= 1 && (counts.queued ?? 0) >= 1);
      const page = await store.listExports(tenant.id, { limit: 2 });
      assert.deepEqual(
        page.map((r) => r.id),
        [e3.id, e2.id],
      );
      const next = await store.listExports(tenant.id, { limit: 2, before: e2.id });
      assert.deepEqual(
        next.map((r) => r.id),
        [e1.id],
      );
      assert.deepEqual(
        (await store.listExports(tenant.id, { limit: 10, status: "failed" })).map((r) => r.id),
        [e2.id],
      );
    });

    test("readExports: many exports in one read, each only with its own tenant, positions included", async () => {
      const mine = await store.ensureTenant(`${name}-streams`, 1);
      const theirs = await store.ensureTenant(`${name}-streams-other`, 1);
      // No worker claims them: the tenant runs nothing.
      await store.updateTenant(`${name}-streams`, { overrides: { maxRunning: 0 } });
      await store.updateTenant(`${name}-streams-other`, { overrides: { maxRunning: 0 } });
      const a = await queued(mine.id, 500_000_000);
      const b = await queued(mine.id, 500_000_001);
      const other = await queued(theirs.id, 500_000_002);
      assert.deepEqual(await store.readExports([]), []);
      const found = await store.readExports([
        { tenantId: mine.id, id: a.id },
        { tenantId: mine.id, id: b.id },
        // Another tenant's export named with this tenant: not returned.
        { tenantId: mine.id, id: other.id },
        { tenantId: theirs.id, id: a.id },
        { tenantId: mine.id, id: newId() },
      ]);
      const byId = new Map(found.map((r) => [r.id, r]));
      assert.deepEqual([...byId.keys()].sort(), [a.id, b.id].sort());
      assert.equal(byId.get(a.id)?.queuePosition, 1);
      assert.equal(byId.get(b.id)?.queuePosition, 2);
      assert.deepEqual(
        (await store.readExports([{ tenantId: theirs.id, id: other.id }])).map((r) => [
          r.id,
          r.queuePosition,
        ]),
        [[other.id, 1]],
      );
      // The states alone, scoped the same way.
      const states = await store.readExportStates([
        { tenantId: mine.id, id: a.id },
        { tenantId: mine.id, id: other.id },
      ]);
      assert.deepEqual(states, [
        {
          id: a.id,
          tenantId: mine.id,
          status: STATUS.queued,
          percent: 0,
          rows: 0,
          parts: 0,
          estimatedRows: 10,
          attempts: 0,
          errorCode: null,
          queuePosition: 1,
        },
      ]);
      // The same record the status read gives (less the version only the status read keeps).
      const single = await store.readExport(mine.id, b.id);
      assert.ok(single);
      const { version: _version, ...record } = single;
      assert.deepEqual(byId.get(b.id), record);
      await store.cancelExport(mine.id, a.id, 500_000_010);
      const [after] = await store.readExports([{ tenantId: mine.id, id: a.id }]);
      assert.equal(after?.status, STATUS.canceled);
      assert.equal(after?.queuePosition, null);
    });

    test("retention: purge expires succeeded exports and drops failed parts; forget deletes", async () => {
      const tenant = await store.ensureTenant(`${name}-retention`, 1);
      await store.updateTenant(`${name}-retention`, { overrides: { maxRunning: 100 } });
      const now = 500_000_000;
      const ok = await queued(tenant.id, now - 2);
      const bad = await queued(tenant.id, now - 1);
      const l = lease("r", now, 600_000);
      const part = { index: 0, objectKey: "k", rows: 1, bytes: 1, sha256: "s" };
      for (const e of [ok, bad]) {
        assert.ok(await store.claimExport(l));
        assert.equal(await store.recordPart(e.id, l, part, null, { percent: 100, rows: 1, parts: 1 }), "ok");
      }
      await store.completeExport(ok.id, l, now + 10);
      await store.failExport(bad.id, l, { code: "too_many_rows", message: "m", retryable: false });
      const due = (await store.listExportsToPurge(now + 20, 100)).map((e) => e.id);
      assert.ok(due.includes(ok.id) && due.includes(bad.id));
      await store.markPurged(ok.id, now + 20);
      await store.markPurged(bad.id, now + 20);
      const expired = await store.getExport(tenant.id, ok.id);
      assert.equal(expired?.status, "expired");
      assert.equal(expired?.parts.length, 1, "an expired export keeps its part metadata");
      assert.deepEqual((await store.getExport(tenant.id, bad.id))?.parts, []);
      assert.equal(
        (await store.listExportsToPurge(now + 30, 100)).some((e) => e.id === ok.id),
        false,
      );
      assert.ok((await store.forgetExports(now + 1, 100)) >= 2);
      assert.equal(await store.getExport(tenant.id, ok.id), null);
    });

    test("leases of dead workers can be ended at once", async () => {
      const tenant = await store.ensureTenant(`${name}-dead`, 1);
      const e = await queued(tenant.id, 1);
      const now = 600_000_000;
      assert.equal((await store.claimExport(lease("host:1:dead", now, 3_600_000)))?.id, e.id);
      assert.ok((await store.leaseOwners()).includes("host:1:dead"));
      assert.equal(await store.expireLeases(["host:1:dead"], now + 1), 1);
      assert.equal((await store.claimExport(lease("fresh", now + 2)))?.id, e.id);
    });

    test("operator writes: each with its audit entry; a disabled or deleted tenant gets no new export", async () => {
      const stamp = { actor: "operator:test", at: 700 };
      const tenantName = `${name}-op`;
      const created = await store.createTenant(tenantName, { overrides: { maxQueued: 3 } }, stamp);
      assert.equal(created?.limits.maxQueued, 3);
      assert.equal(await store.createTenant(tenantName, {}, stamp), null, "a taken name");
      assert.equal((await store.listTenantsPage(`${name}-oo`, 1))[0]?.name, tenantName);
      const tenant = created as NonNullable<typeof created>;
      const mk = () =>
        newExport({ id: newId(), tenantId: tenant.id, request, now: t++, estimatedRows: null });
      const active = await store.createExport(mk(), { maxQueued: 3, idempotency: null });
      assert.equal(active.kind, "created");
      assert.deepEqual(await store.activeExportIds(tenant.id), [
        active.kind === "created" ? active.record.id : "",
      ]);
      const disabled = await store.setTenantDisabled(tenantName, true, { ...stamp, at: 701 });
      assert.equal(disabled?.disabledAt, 701);
      // Checked on the tenant row itself, so a key verified a moment before the disable creates nothing.
      assert.deepEqual(await store.createExport(mk(), { maxQueued: 3, idempotency: null }), {
        kind: "tenant_disabled",
      });
      assert.equal(
        (await store.setTenantDisabled(tenantName, false, { ...stamp, at: 702 }))?.disabledAt,
        null,
      );
      assert.equal(
        (await store.createExport(mk(), { maxQueued: 3, idempotency: { key: "x", requestHash: "y" } })).kind,
        "created",
      );
      assert.deepEqual(await store.deleteTenant(tenantName, { ...stamp, at: 703 }), { exports: 2, keys: 0 });
      assert.equal(await store.findTenantByName(tenantName), null);
      assert.deepEqual(await store.createExport(mk(), { maxQueued: 3, idempotency: null }), {
        kind: "tenant_disabled",
      });
      const entries = await store.listAudit({ tenant: tenantName, limit: 10 });
      assert.deepEqual(
        entries.map((e) => [e.action, e.actor]),
        [
          ["tenant.delete", "operator:test"],
          ["tenant.enable", "operator:test"],
          ["tenant.disable", "operator:test"],
          ["tenant.create", "operator:test"],
        ],
      );
      const disable = entries[2] as {
        before: { disabledAt: number | null };
        after: { disabledAt: number | null };
      };
      assert.equal(disable.before.disabledAt, null);
      assert.equal(disable.after.disabledAt, 701);
      assert.deepEqual(entries[0]?.after, {
        deleted_exports: 2,
        deleted_keys: 0,
        deleted_webhook_endpoints: 0,
      });
      assert.equal(
        (await store.listAudit({ tenant: tenantName, action: "tenant.enable", limit: 10 })).length,
        1,
      );
    });
  });
}
