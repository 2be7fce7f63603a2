/**
 * Webhook rules without I/O: every form an IPv4 or IPv6 address may be spelled in, the forbidden
 * networks, the retry schedule (about three days, jittered), how an answer is judged, and sealed
 * secrets bound to their endpoint.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { checkDatasetsConfig } from "../../src/config/file.js";
import { ConfigError, loadConfig } from "../../src/config/index.js";
import { formatIp, parseIp, parseNetwork, refusedAddress } from "../../src/domain/ip-address.js";
import {
  decodeEventTypes,
  encodeEventTypes,
  generateWebhookSecret,
  judgeAnswer,
  nextRetryDelay,
  RETRY_DELAYS_MS,
} from "../../src/domain/webhooks.js";
import { SecretBox, SecretBoxError } from "../../src/webhooks/secret-box.js";

const ip = (text: string) => {
  const parsed = parseIp(text);
  assert.ok(parsed, `${text} parses`);
  return formatIp(parsed);
};

test("IPv4 in every inet_aton form: decimal, octal, hex, short", () => {
  for (const form of [
    "127.0.0.1",
    "127.1",
    "0x7f000001",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0177.1",
    "127.0.1",
  ])
    assert.equal(ip(form), "127.0.0.1", form);
  assert.equal(ip("0xa9fea9fe"), "169.254.169.254");
  assert.equal(ip("0"), "0.0.0.0");
  for (const bad of ["256.0.0.1", "1.2.3.4.5", "0x1ffffffff", "08.0.0.1", "example.com", "1.2.3.256", ""])
    assert.equal(parseIp(bad), null, bad);
});

test("IPv6 with ::, embedded IPv4, brackets and zones", () => {
  assert.equal(ip("::1"), "0:0:0:0:0:0:0:1");
  assert.equal(ip("[::1]"), "0:0:0:0:0:0:0:1");
  assert.equal(ip("::ffff:127.0.0.1"), "0:0:0:0:0:ffff:7f00:1");
  assert.equal(ip("fe80::1%eth0"), "fe80:0:0:0:0:0:0:1");
  assert.equal(ip("fd00:ec2::254"), "fd00:ec2:0:0:0:0:0:254");
  for (const bad of ["1::2::3", "12345::", "::g", "1:2:3:4:5:6:7:8:9"]) assert.equal(parseIp(bad), null, bad);
});

test("forbidden networks: loopback, private, link-local, CGNAT, metadata, unique-local, mapped; public passes", () => {
  const refused = (text: string) =>
    refusedAddress(parseIp(text) as NonNullable<ReturnType<typeof parseIp>>, []);
  for (const text of [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "::",
    "::ffff:8.8.8.8",
    "fd00:ec2::254",
    "fc00::1",
    "fe80::1",
    "64:ff9b::a00:1",
  ])
    assert.ok(refused(text), `${text} is refused`);
  for (const text of ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"])
    assert.equal(refused(text), null, `${text} passes`);
  const loopback = parseNetwork("127.0.0.0/8");
  assert.ok(loopback);
  assert.equal(
    refusedAddress(parseIp("127.0.0.1") as NonNullable<ReturnType<typeof parseIp>>, [loopback]),
    null,
  );
  assert.ok(
    refusedAddress(parseIp("169.254.169.254") as NonNullable<ReturnType<typeof parseIp>>, [loopback]),
  );
  assert.equal(parseNetwork("10.0.0.0/33"), null);
});

test("the retry schedule lasts about three days, jittered by ±20 %, and ends", () => {
  const total = RETRY_DELAYS_MS.reduce((a, b) => a + b, 0) / 3_600_000;
  assert.ok(total > 70 && total < 80, `${total} h`);
  assert.equal(
    nextRetryDelay(1, 1, () => 0.5),
    5_000,
  );
  assert.equal(
    nextRetryDelay(1, 1, () => 0),
    4_000,
  );
  assert.equal(
    nextRetryDelay(1, 1, () => 0.999_999),
    6_000,
  );
  assert.equal(
    nextRetryDelay(2, 0.5, () => 0.5),
    15_000,
  );
  assert.equal(nextRetryDelay(RETRY_DELAYS_MS.length + 1), null);
  for (let n = 2; n <= RETRY_DELAYS_MS.length; n++)
    assert.ok((RETRY_DELAYS_MS[n - 1] as number) >= (RETRY_DELAYS_MS[n - 2] as number));
});

test("answers: 2xx delivers, 410 disables, anything else (redirects too) retries", () => {
  assert.equal(judgeAnswer(200), "delivered");
  assert.equal(judgeAnswer(204), "delivered");
  assert.equal(judgeAnswer(299), "delivered");
  assert.equal(judgeAnswer(410), "gone");
  for (const status of [null, 100, 301, 302, 307, 400, 404, 429, 500, 503])
    assert.equal(judgeAnswer(status), "retry");
});

test("event types are kept as ,a,b, (one LIKE on both engines) and read back", () => {
  const text = encodeEventTypes(["export.succeeded", "export.failed", "export.succeeded"]);
  assert.equal(text, ",export.failed,export.succeeded,");
  assert.deepEqual(decodeEventTypes(text), ["export.failed", "export.succeeded"]);
});

test("secrets: whsec_ with 32 random bytes; sealed under a key, bound to the endpoint", () => {
  const secret = generateWebhookSecret();
  assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  assert.equal(Buffer.from(secret.slice(6), "base64").length, 32);
  const box = new SecretBox("k".repeat(40));
  const sealed = box.seal(secret, "endpoint-1");
  assert.ok(!sealed.includes(secret.slice(6)));
  assert.equal(box.open(sealed, "endpoint-1"), secret);
  assert.throws(() => box.open(sealed, "endpoint-2"), SecretBoxError);
  assert.throws(() => new SecretBox("x".repeat(40)).open(sealed, "endpoint-1"), SecretBoxError);
});

test("product-wide endpoints from the config file and from EXPORTD_WEBHOOK_URL, checked with key paths", () => {
  const secret = generateWebhookSecret();
  const doc = {
    webhooks: {
      backend: { url: "https://backend.example.com/hooks", events: ["export.failed"], secret },
      all_ends: { url: "https://x.example.com/h", secret },
    },
  };
  const parsed = checkDatasetsConfig(doc, "exportd.yaml", "/");
  assert.deepEqual(
    parsed.webhooks.map((w) => [w.name, w.events]),
    [
      ["backend", ["export.failed"]],
      ["all_ends", ["export.succeeded", "export.failed", "export.canceled", "export.expired"]],
    ],
  );
  assert.throws(
    () =>
      checkDatasetsConfig(
        { webhooks: { bad: { url: "ftp://x", events: ["export.done"], secret: "nope", extra: 1 } } },
        "exportd.yaml",
        "/",
      ),
    (err: unknown) => {
      const text = String((err as Error).message);
      for (const path of [
        "webhooks.bad.extra",
        "webhooks.bad.url",
        "webhooks.bad.events[0]",
        "webhooks.bad.secret",
      ])
        assert.ok(text.includes(path), `${path} in ${text}`);
      return true;
    },
  );
  const config = loadConfig({
    EXPORTD_WEBHOOK_URL: "https://hooks.example.com/x",
    EXPORTD_WEBHOOK_SECRET: secret,
    EXPORTD_WEBHOOK_EVENTS: "export.succeeded,export.created",
    EXPORTD_WEBHOOK_ALLOW_NETWORKS: "10.0.0.0/8, fd00::/8",
  });
  assert.deepEqual(
    config.webhooks.endpoints.map((w) => [w.name, w.events]),
    [["env", ["export.succeeded", "export.created"]]],
  );
  assert.deepEqual(
    config.webhooks.allowedNetworks.map((n) => n.label),
    ["10.0.0.0/8", "fd00::/8"],
  );
  assert.equal(config.webhooks.timeoutMs, 10_000);
  assert.throws(
    () => loadConfig({ EXPORTD_WEBHOOK_URL: "https://h.example.com", EXPORTD_WEBHOOK_SECRET: "x" }),
    ConfigError,
  );
  assert.throws(() => loadConfig({ EXPORTD_WEBHOOK_ALLOW_NETWORKS: "10.0.0.0/40" }), ConfigError);
});
