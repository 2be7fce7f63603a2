/**
 * API key format and hashing. A key reads `exd_<prefix>_<secret>`: the prefix is stored in clear to
 * find the key (and to show it in listings), the whole key only as a SHA-256 hash. The secret has
 * 190 bits of entropy, so a fast hash is enough — there is nothing to brute-force. Operator keys
 * (the operator API, acting for a tenant) have the same shape with `exo_`, so a leaked one is
 * recognisable as the more powerful kind.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const KEY_PATTERN = /^exd_([a-z0-9]{10})_([A-Za-z0-9_-]{32})$/;
const OPERATOR_KEY_PATTERN = /^exo_([a-z0-9]{10})_([A-Za-z0-9_-]{32})$/;

/** Which kind of key a key is: a tenant's (`exd_`) or an operator's (`exo_`). */
export type KeyKind = "tenant" | "operator";

export interface GeneratedKey {
  key: string;
  prefix: string;
  hash: string;
  last4: string;
}

function randomAlnum(length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** A new key of the kind: the key itself (shown once), its prefix, hash and last four characters. */
export function generateKey(kind: KeyKind = "tenant"): GeneratedKey {
  const prefix = randomAlnum(10);
  const key = `${kind === "tenant" ? "exd" : "exo"}_${prefix}_${randomBytes(24).toString("base64url")}`;
  return { key, prefix, hash: hashKey(key), last4: key.slice(-4) };
}

/** The prefix of a well-formed tenant key, or null. */
export function keyPrefix(key: string): string | null {
  return KEY_PATTERN.exec(key)?.[1] ?? null;
}

/** The prefix of a well-formed operator key (`exo_…`), or null. */
export function operatorKeyPrefix(key: string): string | null {
  return OPERATOR_KEY_PATTERN.exec(key)?.[1] ?? null;
}

/** Two hex SHA-256 digests compared in constant time. */
export function hashesMatch(givenHash: string, storedHash: string): boolean {
  const given = Buffer.from(givenHash, "hex");
  const stored = Buffer.from(storedHash, "hex");
  return given.length === stored.length && timingSafeEqual(given, stored);
}
