/**
 * When a dataset's source is away for now rather than refusing the export: the database is down,
 * restarting, out of connections, cut off, or stalled. The export job rides such failures out with
 * the same retry passes as a failing object store; anything else (a refusal, a bug) is not waited on. The
 * connection classes are the metadata store's (store/unavailable.ts), shared rather than copied.
 */
import type { ExportRequest } from "../domain/export.js";
import { isUnavailable, StoreUnavailableError } from "../metadata/unavailable.js";
import { SourceStalledError } from "../pipeline/run-export.js";
import type { Dataset, TenantRef } from "../sources/types.js";

/**
 * SQLSTATEs beyond the metadata store's "not now" list (store/unavailable.ts) that a source read may
 * also meet and that pass by themselves: class 53 insufficient resources (disk full, out of memory,
 * too many connections), class 57P (operator intervention: shutdown, cannot connect now), 40001
 * serialization_failure and 40P01 deadlock_detected (PostgreSQL's manual: retry the transaction).
 */
const SOURCE_CODES = /^(53[0-9A-Z]{3}|57P[0-9A-Z]{2}|40001|40P01)$/;

/**
 * Whether `err` from a source read or estimate means "the source is away, try again later":
 * connection errors and timeouts (the metadata store's `isUnavailable`), the SQLSTATEs above, a stall.
 */
export function isSourceUnavailable(err: unknown): boolean {
  if (err instanceof SourceStalledError || err instanceof EstimateTimeout) return true;
  // The metadata store being away is not the source's (isUnavailable says yes to it).
  if (err instanceof StoreUnavailableError) return false;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && SOURCE_CODES.test(code)) return true;
  return isUnavailable(err);
}

/**
 * How long a create waits for its row estimate: the count itself gives up after 2 s (then
 * EXPLAIN's guess stands in), so past this the source is not answering. A create then queues
 * without an estimate (the worker makes one beside the run); a dry run answers 503.
 */
export const ESTIMATE_WAIT_MS = 4000;

/** The source did not give its estimate within the wait. */
export class EstimateTimeout extends Error {
  constructor(ms: number) {
    super(`the source gave no row estimate within ${ms} ms`);
    this.name = "EstimateTimeout";
  }
}

/**
 * The dataset's row estimate, or EstimateTimeout after `ms`: a source whose connection froze holds
 * the query (the server's statement_timeout cannot fire when its answer never arrives); the query
 * itself goes on and settles when the source answers or its connection dies.
 */
export function estimateWithin(
  dataset: Dataset,
  tenant: TenantRef,
  request: ExportRequest,
  now: number,
  ms = ESTIMATE_WAIT_MS,
): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new EstimateTimeout(ms)), ms);
  });
  return Promise.race([dataset.estimateRows(tenant, request, now), timeout]).finally(() =>
    clearTimeout(timer),
  );
}
