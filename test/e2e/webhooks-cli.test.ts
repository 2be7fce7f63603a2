/**
 * The operator's product-wide endpoints through the built CLI (run `npm run build` first):
 * `exportd webhooks add` prints the secret once, the served process delivers every tenant's events
 * to it signed with that secret, `deliveries` shows the log, `rotate` makes both secrets sign, and
 * `disable`, `troubled` and `remove` do what they say.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { api, cli, createKey, startServer, stopAll, tempDataDir } from "../helpers/server-process.js";
import { pastMidnight, waitFor } from "../helpers/service.js";
import { assertSigned, Receiver } from "../helpers/webhook-receiver.js";

const receiver = new Receiver();
after(async () => {
  await stopAll();
  await receiver.stop();
});

test("exportd webhooks: add, deliver every tenant's events, log, rotate, disable, remove", async () => {
  await receiver.start();
  const dataDir = tempDataDir("exportd-webhooks-cli-");
  const env = {
    EXPORTD_WEBHOOK_ALLOW_HTTP: "true",
    EXPORTD_WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8",
    EXPORTD_WORKER_POLL_MS: "200",
  };
  const refused = (() => {
    try {
      cli(dataDir, ["webhooks", "add", "http://169.254.169.254/x"], env);
      return "";
    } catch (err) {
      return (err as Error).message;
    }
  })();
  assert.match(refused, /refused.*link-local/);
  const added = cli(dataDir, ["webhooks", "add", receiver.url, "--events", "export.succeeded"], env)
    .trim()
    .split("\n");
  const secret = added.at(-1) ?? "";
  assert.match(secret, /^whsec_/);
  const id = (added[0] ?? "").split(" ")[0] ?? "";
  assert.match(
    cli(dataDir, ["webhooks", "list"], env),
    new RegExp(`${id}.*product-wide.*export\\.succeeded.*enabled`),
  );

  const server = await startServer({ dataDir, env });
  const to = pastMidnight();
  const body = {
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
  };
  for (const tenant of ["one", "two"]) {
    const res = await api(server.url, createKey(dataDir, tenant, undefined, env)).post("/v1/exports", body);
    assert.equal(res.status, 202);
  }
  // The log, not the receiver, is waited for: the receiver sees a request before the deliverer
  // has read the answer and recorded the attempt.
  await waitFor(
    () =>
      cli(dataDir, ["webhooks", "deliveries", id], env).match(/export\.succeeded {2}delivered/g)?.length ?? 0,
    (n) => n === 2,
  );
  // At least once each: an answer read after the deliverer's timeout is sent again, same id and body.
  assert.equal(receiver.distinct().length, 2);
  assert.deepEqual(
    receiver
      .distinct()
      .map((r) => r.json.tenant?.name)
      .sort(),
    ["one", "two"],
  );
  for (const r of receiver.received) assertSigned(secret, r);

  const rotated = cli(dataDir, ["webhooks", "rotate", id], env).trim().split("\n").at(-1) ?? "";
  assert.match(cli(dataDir, ["webhooks", "test", id], env), /Queued test event/);
  const test_ = await waitFor(
    () => receiver.ofType("webhook.test")[0],
    (r) => r !== undefined,
  );
  assert.ok(test_);
  assertSigned(rotated, test_);
  assertSigned(secret, test_);

  assert.match(cli(dataDir, ["webhooks", "disable", id], env), /disabled \(manual/);
  assert.equal(cli(dataDir, ["webhooks", "troubled"], env).trim(), "", "a manual disable is no trouble");
  assert.match(cli(dataDir, ["webhooks", "remove", id], env), /Removed/);
  assert.equal(cli(dataDir, ["webhooks", "list"], env).trim(), "");

  // Every write audited as the CLI's user, like the operator API's, and never with a secret.
  const audit = cli(dataDir, ["audit", "list", "--limit", "50"], env);
  const actions = audit
    .trim()
    .split("\n")
    .filter((line) => line.includes(id))
    .map((line) => line.split(/\s+/)[2])
    .reverse();
  assert.deepEqual(actions, [
    "webhook_endpoint.create",
    "webhook_endpoint.rotate_secret",
    "webhook_endpoint.test",
    "webhook_endpoint.disable",
    "webhook_endpoint.delete",
  ]);
  assert.match(audit, / {2}cli:\S+ {2}webhook_endpoint\.create/);
  assert.ok(!audit.includes("whsec_"), "no secret in the audit log");
});
