/**
 * API key format and hashing. A key reads `exd_<prefix>_<secret>`: the prefix is stored in clear to
 * find the key (and to show it in listings), the whole key only as a SHA-256 hash. The secret has
 * 190 bits of entropy, so a fast hash is enough — there is nothing to brute-force.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

const KEY_PATTERN = /^exd_([a-z0-9]{10})_([A-Za-z0-9_-]{32})$/;

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

export function generateKey(): GeneratedKey {
  const prefix = randomAlnum(10);
  const key = `exd_${prefix}_${randomBytes(24).toString("base64url")}`;
  return { key, prefix, hash: hashKey(key), last4: key.slice(-4) };
}

/** The prefix of a well-formed key, or null. */
export function keyPrefix(key: string): string | null {
  return KEY_PATTERN.exec(key)?.[1] ?? null;
}

/** Two hex SHA-256 digests compared in constant time. */
export function hashesMatch(givenHash: string, storedHash: string): boolean {
  const given = Buffer.from(givenHash, "hex");
  const stored = Buffer.from(storedHash, "hex");
  return given.length === stored.length && timingSafeEqual(given, stored);
}
