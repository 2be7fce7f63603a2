/**
 * The one catalogue of error codes. Every error that leaves exportd — as an HTTP error envelope or as
 * the `error` of a failed export — uses a code declared here. docs/errors.md is generated from this
 * table (`npm run docs:errors`) and a test keeps the two equal.
 */

export interface ErrorSpec {
  /** HTTP status for request errors; null for codes that only appear on a failed export. */
  readonly status: number | null;
  /** Whether repeating the same request (or export) later can succeed. */
  readonly retryable: boolean;
  /** When the code is used, written for the client developer. */
  readonly when: string;
}

export const ERROR_CATALOGUE = {
  invalid_request: {
    status: 400,
    retryable: false,
    when: "The request is malformed: bad JSON, unknown or missing fields, wrong types, unknown dataset, columns or filters, unparseable dates, `from` not before `to`. `details` lists each bad field.",
  },
  invalid_date_range: {
    status: 400,
    retryable: false,
    when: "The time range is longer than the dataset allows. `details` names the limit.",
  },
  unauthorized: {
    status: 401,
    retryable: false,
    when: "The Authorization header is missing, is not `Bearer <key>`, or names an unknown or revoked key.",
  },
  insufficient_scope: {
    status: 403,
    retryable: false,
    when: "The key is valid but lacks the scope this route needs; the message names the scope.",
  },
  plan_required: {
    status: 403,
    retryable: false,
    when: "The dataset is not part of the tenant's plan. The message names the dataset; an upgrade of the plan is needed.",
  },
  invalid_signature: {
    status: 403,
    retryable: false,
    when: "A signed download link was altered or is malformed. Ask the API for a fresh link.",
  },
  link_expired: {
    status: 403,
    retryable: false,
    when: "A signed download link is past its expiry. Ask the API for a fresh link (`GET /v1/exports/{id}/download`).",
  },
  not_found: {
    status: 404,
    retryable: false,
    when: "No such route, or no such export for this tenant (another tenant's export is also not found).",
  },
  not_cancellable: {
    status: 409,
    retryable: false,
    when: "The export already reached a final status and can no longer be canceled.",
  },
  export_not_ready: {
    status: 409,
    retryable: true,
    when: "A download was asked for an export that has not succeeded (yet); `details` carries the current status.",
  },
  idempotency_conflict: {
    status: 409,
    retryable: false,
    when: "The `Idempotency-Key` was already used in the last 24 hours with a different request body. Use a new key for a new request.",
  },
  export_expired: {
    status: 410,
    retryable: false,
    when: "The export's files were deleted by the retention policy. Create a new export.",
  },
  precondition_failed: {
    status: 412,
    retryable: false,
    when: "A download's `If-Match` or `If-Unmodified-Since` does not hold: the file is not the one the client expects.",
  },
  payload_too_large: {
    status: 413,
    retryable: false,
    when: "The request body is larger than the server accepts.",
  },
  unsupported_media_type: {
    status: 415,
    retryable: false,
    when: "The request body is not `application/json`.",
  },
  range_not_satisfiable: {
    status: 416,
    retryable: false,
    when: "A download's `Range` lies outside the file; `Content-Range: bytes */SIZE` gives the size.",
  },
  rate_limited: {
    status: 429,
    retryable: true,
    when: "The key sent more requests than its plan allows per minute. Wait for `Retry-After` seconds; the `RateLimit-*` headers show the budget.",
  },
  too_many_exports: {
    status: 429,
    retryable: true,
    when: "The tenant already has as many exports waiting in the queue as its plan allows. Retry after some finish (`Retry-After`).",
  },
  internal_error: {
    status: 500,
    retryable: true,
    when: "An unexpected failure inside exportd. The request id in the envelope finds it in the logs.",
  },
  maintenance: {
    status: 503,
    retryable: true,
    when: "exportd is in maintenance: writes (create, cancel) are refused, reads and downloads keep working. Retry after `Retry-After` seconds.",
  },
  service_unavailable: {
    status: 503,
    retryable: true,
    when: "A dependency (metadata store, object store) cannot serve right now: the database is down, restarting or failing over, or its disk is full. Retry after `Retry-After` seconds. `/readyz` answers it too, with `details` naming each dependency that is not ready.",
  },
  too_many_rows: {
    status: null,
    retryable: false,
    when: "The export would pass the dataset's row limit. Narrow the range or the filters; it will never succeed as is.",
  },
  too_much_data: {
    status: null,
    retryable: false,
    when: "The export would pass the dataset's byte limit (`max_bytes`, counted before compression). Narrow the range, the filters or the columns; it will never succeed as is.",
  },
  source_error: {
    status: null,
    retryable: true,
    when: "Reading the dataset failed and retries ran out.",
  },
  storage_error: {
    status: null,
    retryable: true,
    when: "Writing the export's files failed and retries ran out.",
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** One entry of an error's `details`: which field is wrong and why. */
export interface ErrorDetail {
  field: string;
  code: string;
  message: string;
}

/** An error a client can act on. Anything else reaching the HTTP layer becomes `internal_error`. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly details: ErrorDetail[];
  /** Extra response headers (Retry-After and the like). */
  readonly headers: Record<string, string>;

  constructor(
    code: ErrorCode,
    message: string,
    details: ErrorDetail[] = [],
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "AppError";
    this.code = code;
    this.details = details;
    this.headers = headers;
  }

  /** Fastify reads `statusCode` from errors thrown by plugins. */
  get statusCode(): number {
    return this.status;
  }

  get status(): number {
    return ERROR_CATALOGUE[this.code].status ?? 500;
  }

  get retryable(): boolean {
    return ERROR_CATALOGUE[this.code].retryable;
  }
}

export function invalidRequest(details: ErrorDetail[], message = "The request is not valid."): AppError {
  return new AppError("invalid_request", message, details);
}
