/**
 * The sender against a real receiver: addresses are checked when the delivery is sent (a name
 * resolving to loopback is refused and nothing connects), the connection goes to the very
 * address that was checked (pinned, whatever the name), a name with one forbidden address among
 * several is refused, and only the first KiB of an answer is kept.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { parseNetwork } from "../../src/domain/ip-address.js";
import { postWebhook, type UrlPolicy } from "../../src/webhooks/sender.js";
import { Receiver } from "../helpers/webhook-receiver.js";

const loopback = parseNetwork("127.0.0.0/8");
assert.ok(loopback);
const strict: UrlPolicy = { allowHttp: true, allowedNetworks: [] };
const allowLoopback: UrlPolicy = { allowHttp: true, allowedNetworks: [loopback] };
const body = JSON.stringify({ id: "evt", type: "webhook.test" });

let r: Receiver;
before(async () => {
  r = await new Receiver().start();
});
after(() => r.stop());

test("refused at delivery time: localhost and loopback forms, without connecting", async () => {
  for (const host of ["localhost", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::ffff:127.0.0.1]"]) {
    const result = await postWebhook(`http://${host}:${r.port}/hooks`, {}, body, {
      policy: strict,
      timeoutMs: 1000,
    });
    assert.equal(result.status, null, host);
    assert.match(result.error ?? "", /^refused: .*loopback|IPv4-mapped/, host);
  }
  assert.equal(r.received.length, 0, "nothing reached the receiver");
});

test("the connection goes to the address that was checked, whatever the name", async () => {
  let lookups = 0;
  const resolve = async () => {
    lookups += 1;
    return [{ address: "127.0.0.1", family: 4 }];
  };
  const result = await postWebhook(
    `http://hooks.pinned.test:${r.port}/hooks`,
    { "webhook-id": "evt" },
    body,
    {
      policy: allowLoopback,
      timeoutMs: 2000,
      resolve,
    },
  );
  assert.equal(result.status, 204, result.error ?? "");
  assert.equal(lookups, 1, "resolved once: the socket used the checked address");
  assert.equal(r.received.at(-1)?.headers.host, `hooks.pinned.test:${r.port}`);
});

test("a name with a forbidden address among its addresses is refused", async () => {
  const before = r.received.length;
  const resolve = async () => [
    { address: "93.184.216.34", family: 4 },
    { address: "169.254.169.254", family: 4 },
  ];
  const result = await postWebhook("https://mixed.test/hooks", {}, body, {
    policy: strict,
    timeoutMs: 1000,
    resolve,
  });
  assert.equal(result.status, null);
  assert.match(result.error ?? "", /169\.254\.169\.254.*link-local/);
  assert.equal(r.received.length, before);
});

test("only the first KiB of the answer is kept", async () => {
  r.script = [{ status: 200, body: "x".repeat(100_000) }];
  const result = await postWebhook(r.url, {}, body, { policy: allowLoopback, timeoutMs: 2000 });
  assert.equal(result.status, 200);
  assert.equal(result.response?.length, 1024);
});

test("a name that gets no DNS answer counts against the attempt's timeout", async () => {
  const started = Date.now();
  const never = () => new Promise<{ address: string; family: number }[]>(() => undefined);
  const result = await postWebhook("https://silent.test/hooks", {}, body, {
    policy: strict,
    timeoutMs: 300,
    resolve: never,
  });
  assert.equal(result.status, null);
  assert.match(result.error ?? "", /silent\.test does not resolve \(ETIMEOUT\)/);
  assert.ok(Date.now() - started < 2000);
});
