/**
 * Riding out a failing object store: which failures may pass by themselves, and how long to wait
 * between tries. One policy for both object stores; the worker applies it to a whole run (a part
 * stream cannot be replayed mid-stream, so the run restarts from its last published part).
 */
import { StorageError } from "./errors.js";

/** Exponential back-off with jitter, within a total budget. Times in milliseconds. */
export interface BackoffPolicy {
  /** How long failures may go on (since the first one after the last reset) before giving up. */
  budgetMs: number;
  /** First delay; doubles per try. */
  baseMs: number;
  /** Longest delay: also the longest a recovered store waits to be noticed. */
  capMs: number;
}

/** 250 ms, 500 ms, 1 s … 10 s: a short outage costs little, a long one about 6 tries a minute. */
export const STORAGE_BACKOFF = { baseMs: 250, capMs: 10_000 } as const;

/**
 * errno codes that no wait will change: permissions, a read-only file system, a bad name, a missing
 * folder (the objects folder gone; also what a recursive mkdir reports on a read-only file system).
 * A full disk (ENOSPC, EDQUOT) or an I/O error may pass (space freed, a device back): retried.
 */
const PERMANENT_CODES = new Set(["EACCES", "EPERM", "EROFS", "ENOENT", "ENAMETOOLONG", "EISDIR", "ENOTDIR"]);

/**
 * Whether waiting cannot help: a permission or configuration problem (errno codes above; an S3
 * 4xx such as AccessDenied or NoSuchBucket, except 408 timeout and 429 throttling). Everything else
 * — network errors, S3 5xx, a full disk, a stream cut short — is worth another try.
 */
export function isPermanentStorageError(err: unknown): boolean {
  let cause: unknown = err instanceof StorageError ? err.cause : err;
  for (let depth = 0; depth < 5 && cause instanceof Object; depth++) {
    const e = cause as { code?: unknown; $metadata?: { httpStatusCode?: number }; cause?: unknown };
    if (typeof e.code === "string" && PERMANENT_CODES.has(e.code)) return true;
    const status = e.$metadata?.httpStatusCode;
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429)
      return true;
    cause = e.cause;
  }
  return false;
}

/**
 * Delays between tries of something that keeps failing: exponential, with "equal jitter" (half the
 * delay fixed, half random) so that workers hit by one outage do not come back in step.
 */
export class Backoff {
  private since: number | null = null;
  private tries = 0;

  constructor(
    private readonly policy: BackoffPolicy,
    private readonly clock: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next try, or null when the budget since the first failure is spent. */
  next(): number | null {
    const now = this.clock();
    this.since ??= now;
    const left = this.since + this.policy.budgetMs - now;
    if (left <= 0) return null;
    const step = Math.min(this.policy.capMs, this.policy.baseMs * 2 ** this.tries);
    this.tries++;
    return Math.min(left, step / 2 + (this.random() * step) / 2);
  }

  /** Progress was made: the next failure starts a fresh budget. */
  reset(): void {
    this.since = null;
    this.tries = 0;
  }

  /** Tries that failed since the last reset. */
  get failures(): number {
    return this.tries;
  }
}
