/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-signature` is
 * `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, signed by the maintained `standardwebhooks`
 * package. During a rotation the old secret signs too: the header then carries both signatures,
 * space-separated, and a receiver holding either secret verifies.
 */
import { Webhook } from "standardwebhooks";

/** The three headers of a signed delivery. */
export interface SignedHeaders {
  "webhook-id": string;
  "webhook-timestamp": string;
  "webhook-signature": string;
}

/**
 * Signs `body` for message `id` at `at` (epoch ms; the header carries whole seconds) with every
 * secret given (`whsec_…`), newest first.
 */
export function signDelivery(
  id: string,
  at: number,
  body: string,
  secrets: readonly string[],
): SignedHeaders {
  const when = new Date(Math.floor(at / 1000) * 1000);
  const signatures = secrets.map((secret) => new Webhook(secret).sign(id, when, body));
  return {
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at / 1000)),
    "webhook-signature": signatures.join(" "),
  };
}
