/** The errors the client throws: every one an ExportdClientError, so callers can catch them all. */
import type { ErrorEnvelope } from "./types.js";

/** Base class of every error this client throws. */
export class ExportdClientError extends Error {
  override name = "ExportdClientError";
}

/**
 * The API answered with its error envelope: `status` is the HTTP status, `code` the catalogue code
 * (docs/errors.md), `details` which fields were wrong, `retryAfterSeconds` the `Retry-After` if any.
 */
export class ExportdApiError extends ExportdClientError {
  override name = "ExportdApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly details: ErrorEnvelope["error"]["details"],
    readonly retryAfterSeconds: number | null,
  ) {
    super(message);
  }
}

/** The server could not be reached, or the connection broke before a whole answer came. */
export class ExportdNetworkError extends ExportdClientError {
  override name = "ExportdNetworkError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * A downloaded part's SHA-256 is not the one the export lists: the bytes are not the part. The
 * partial file is deleted (never left as if complete), so the next download starts over.
 */
export class ChecksumMismatchError extends ExportdClientError {
  override name = "ChecksumMismatchError";
  constructor(
    readonly filename: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${filename}: SHA-256 ${actual} is not the expected ${expected}; the download was discarded.`);
  }
}

/** The operation was stopped through its AbortSignal. */
export class ExportdAbortError extends ExportdClientError {
  override name = "AbortError";
  constructor() {
    super("The operation was aborted.");
  }
}
