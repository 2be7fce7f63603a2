/**
 * Operator keys: issuing, listing and revoking them (the CLI), and verifying the credential of an
 * operator request — an operator key (`exo_…`, hashed like tenant keys) or the one bootstrap token
 * from the environment (EXPORTD_ADMIN_TOKEN, kept in memory only as its SHA-256 and compared in
 * constant time). The operator API's authentication and acting for a tenant both call `verify`.
 */
import { generateKey, hashesMatch, hashKey, operatorKeyPrefix } from "../domain/api-keys.js";
import { newId } from "../domain/ids.js";
import { OPERATOR_SCOPES, type OperatorScope } from "../domain/operator-scopes.js";
import type { AuditStamp, OperatorKeyRecord, OperatorPort } from "../metadata/types.js";
import { actors } from "./audit.js";
import { TtlCache } from "./ttl-cache.js";

/** An authenticated operator: the audit actor, the key's id (for rate limits), its prefix and scopes. */
export interface OperatorCaller {
  /** `operator:<prefix>` or `bootstrap`. */
  actor: string;
  keyId: string;
  /** The key's prefix, or `bootstrap`. */
  prefix: string;
  scopes: readonly OperatorScope[];
}

export type OperatorKeysPort = Pick<
  OperatorPort,
  | "insertOperatorKey"
  | "findOperatorKeyByPrefix"
  | "listOperatorKeys"
  | "revokeOperatorKey"
  | "touchOperatorKey"
>;

/** Creates an operator key; the key itself is returned once and stored only as a hash. */
export async function issueOperatorKey(
  port: OperatorKeysPort,
  name: string,
  scopes: OperatorScope[],
  stamp: AuditStamp,
): Promise<{ key: string; record: OperatorKeyRecord }> {
  const generated = generateKey("operator");
  const record: OperatorKeyRecord = {
    id: newId(),
    prefix: generated.prefix,
    hash: generated.hash,
    last4: generated.last4,
    name,
    scopes,
    createdAt: stamp.at,
    lastUsedAt: null,
    revokedAt: null,
  };
  await port.insertOperatorKey(record, stamp);
  return { key: generated.key, record };
}

export function listOperatorKeys(port: OperatorKeysPort): Promise<OperatorKeyRecord[]> {
  return port.listOperatorKeys();
}

/** Revokes the active operator key with this prefix; false when there is none. */
export function revokeOperatorKey(
  port: OperatorKeysPort,
  prefix: string,
  stamp: AuditStamp,
): Promise<boolean> {
  return port.revokeOperatorKey(prefix, stamp);
}

/** A verified operator key is trusted this long per process: a revoked key stops within it. */
export const OPERATOR_KEY_CACHE_MS = 1_000;
/** last_used_at of an operator key is written at most this often per key. */
const TOUCH_EVERY_MS = 60_000;

/** Verifies operator credentials; one per process (its cache is per process). */
export class OperatorAuthenticator {
  private readonly cache = new TtlCache<OperatorCaller>(OPERATOR_KEY_CACHE_MS);
  private readonly lastTouched = new Map<string, number>();
  private readonly bootstrapDigest: string | null;

  /** `bootstrapToken`: EXPORTD_ADMIN_TOKEN, or null when none is configured. */
  constructor(
    private readonly port: OperatorKeysPort,
    bootstrapToken: string | null,
  ) {
    this.bootstrapDigest = bootstrapToken === null ? null : hashKey(bootstrapToken);
  }

  /** Whether the token has an operator key's shape (`exo_…`): such a token is never a tenant's. */
  static looksLikeOperatorKey(token: string): boolean {
    return operatorKeyPrefix(token) !== null;
  }

  /** Whether `digest` (a credential's SHA-256, hex) is the bootstrap token's; compared in constant time. */
  isBootstrap(digest: string): boolean {
    return this.bootstrapDigest !== null && hashesMatch(digest, this.bootstrapDigest);
  }

  /** The operator this token authenticates, or null (unknown, revoked, or no operator credential). */
  async verify(token: string, now: number): Promise<OperatorCaller | null> {
    const digest = hashKey(token);
    const cached = this.cache.get(digest, now);
    if (cached) return cached;
    let caller: OperatorCaller | null = null;
    const prefix = operatorKeyPrefix(token);
    if (prefix !== null) {
      const found = await this.port.findOperatorKeyByPrefix(prefix);
      if (found && found.revokedAt === null && hashesMatch(digest, found.hash)) {
        caller = { actor: actors.operatorKey(found.prefix), keyId: found.id, prefix, scopes: found.scopes };
        if (now - (this.lastTouched.get(found.id) ?? 0) >= TOUCH_EVERY_MS) {
          this.lastTouched.set(found.id, now);
          await this.port.touchOperatorKey(found.id, now);
        }
      }
    } else if (this.isBootstrap(digest)) {
      caller = { actor: actors.bootstrap, keyId: "bootstrap", prefix: "bootstrap", scopes: OPERATOR_SCOPES };
    }
    if (caller) this.cache.set(digest, caller, now);
    return caller;
  }
}
