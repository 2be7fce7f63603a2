/**
 * The audit log of operator writes: who (`operator:<prefix>`, `bootstrap`, `cli:<user>`, and
 * `token:<sub>` for a tenant a sign-in token created on first sight), what,
 * on which target, when, before and after. Writes of the OperatorPort record their entry in their
 * own transaction; writes made through other ports (API keys, maintenance, a cancel) record it
 * right after with `recordAudit`. Read by the operator API and the CLI.
 */
import { invalidRequest } from "../domain/errors.js";
import { isUuid, newId } from "../domain/ids.js";
import type { AuditEntry, AuditQuery, AuditStamp, OperatorPort } from "../metadata/types.js";

/** Who acts, as the audit log and the request log spell it; `at` is filled in per write. */
export type Actor = string;

/**
 * The audit actor of an operator key, of the bootstrap token, of the CLI run by an OS user, and of
 * a product sign-in token (its `sub`; it writes only the tenant it creates on first sight).
 */
export const actors = {
  operatorKey: (prefix: string): Actor => `operator:${prefix}`,
  bootstrap: "bootstrap" as Actor,
  cli: (user: string): Actor => `cli:${user}`,
  token: (subject: string): Actor => `token:${subject}`,
};

/** The stamp of a write by `actor` now. */
export function stampOf(actor: Actor, now: number): AuditStamp {
  return { actor, at: now };
}

/** Records one entry for a write made through another port than the OperatorPort. */
export async function recordAudit(
  log: Pick<OperatorPort, "appendAudit">,
  stamp: AuditStamp,
  what: { action: string; tenant: string | null; target: string; before: unknown; after: unknown },
): Promise<void> {
  await log.appendAudit({ id: newId(), ...stamp, ...what });
}

/**
 * A page of entries, newest first, and the cursor of the next page (null on the last). The cursor
 * is the last entry's id, base64url-encoded; throws AppError `invalid_request` for one that is not.
 */
export async function listAudit(
  log: Pick<OperatorPort, "listAudit">,
  query: { tenant?: string; action?: string; cursor?: string; limit: number },
): Promise<{ entries: AuditEntry[]; nextCursor: string | null }> {
  const before = query.cursor === undefined ? undefined : decodeIdCursor(query.cursor);
  const q: AuditQuery = { tenant: query.tenant, action: query.action, before, limit: query.limit + 1 };
  const rows = await log.listAudit(q);
  const entries = rows.slice(0, query.limit);
  const last = entries[entries.length - 1];
  return { entries, nextCursor: rows.length > query.limit && last ? encodeCursor(last.id) : null };
}

/** A page cursor: a key of the last item of the page, opaque to the client. */
export function encodeCursor(value: string): string {
  return Buffer.from(value).toString("base64url");
}

/** The value of a cursor from encodeCursor; throws AppError `invalid_request` for anything else. */
export function decodeCursor(cursor: string): string {
  const value = Buffer.from(cursor, "base64url").toString();
  if (value.length === 0 || encodeCursor(value) !== cursor)
    throw invalidRequest([{ field: "cursor", code: "invalid", message: "Not a cursor from this API." }]);
  return value;
}

/** A cursor that must hold an id (UUID). */
export function decodeIdCursor(cursor: string): string {
  const id = decodeCursor(cursor);
  if (!isUuid(id))
    throw invalidRequest([{ field: "cursor", code: "invalid", message: "Not a cursor from this API." }]);
  return id;
}
