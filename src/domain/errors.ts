/**
 * The one catalogue of error codes. Every error that leaves exportd — as an HTTP error envelope or as
 * the `error` of a failed export — uses a code declared here. docs/errors.md is generated from this
 * table (`npm run docs:errors`) and a test keeps the two equal.
 */
import type { ExportStatus } from "./status.js";

export interface ErrorSpec {
  /** HTTP status for request errors; null for codes that only appear on a failed export. */
  readonly status: number | null;
  /** Whether repeating the same request (or export) later can succeed. */
  readonly retryable: boolean;
  /** When the code is used, written for the client developer. */
  readonly when: string;
  /**
   * Which requests may be answered with the code, so that the OpenAPI document lists it on exactly
   * those routes: `every` request; `authenticated` routes (those with a scope); routes that take a
   * `body` (POST, PUT, PATCH, DELETE); `write`s that maintenance pauses; `named`: only routes that
   * list it in their `config.errors`. Null for codes that only appear on a failed export.
   */
  readonly on: RequestClass | null;
}

/** See ErrorSpec.on. */
export type RequestClass = "every" | "authenticated" | "body" | "write" | "named";

export const ERROR_CATALOGUE = {
  invalid_request: {
    status: 400,
    retryable: false,
    on: "every",
    when: "The request is malformed: bad JSON or bytes that are not UTF-8, a string that is not well-formed Unicode (a lone surrogate such as `\\ud800`), unknown or missing fields, wrong types, unknown dataset, columns or filters, unparseable dates, `from` not before `to`, several `Authorization` headers (which key is meant is ambiguous), or several `X-Exportd-Tenant` headers from an operator. `details` lists each bad field.",
  },
  invalid_webhook_url: {
    status: 400,
    retryable: false,
    on: "named",
    when: "A webhook endpoint's URL is refused: not https (unless the operator allows http), carries credentials or a fragment, or its host is — or resolves to — an address exportd does not send to (loopback, private, link-local and cloud metadata, carrier-grade NAT, unique-local IPv6, IPv4-mapped IPv6…; see docs/webhooks.md). The message says why.",
  },
  invalid_date_range: {
    status: 400,
    retryable: false,
    on: "named",
    when: "The time range is longer than the dataset allows. `details` names the limit.",
  },
  unauthorized: {
    status: 401,
    retryable: false,
    on: "authenticated",
    when: "The Authorization header is missing, is not `Bearer <key>`, or names an unknown or revoked key; or it carries a sign-in token (JWT) that fails verification — the message says only that it is not valid or has expired, the server's log says which check failed.",
  },
  insufficient_scope: {
    status: 403,
    retryable: false,
    on: "authenticated",
    when: "The key is valid but lacks the scope this route needs; the message names the scope.",
  },
  plan_required: {
    status: 403,
    retryable: false,
    on: "named",
    when: "The dataset is not part of the tenant's plan. The message names the dataset; an upgrade of the plan is needed.",
  },
  invalid_signature: {
    status: 403,
    retryable: false,
    on: "named",
    when: "A signed download link was altered or is malformed: a link must be used exactly as issued (`expires` as written, without leading zeros; no query parameter the link does not carry). Ask the API for a fresh link.",
  },
  link_expired: {
    status: 403,
    retryable: false,
    on: "named",
    when: "A signed download link is past its expiry. Ask the API for a fresh link (`GET /v1/exports/{id}/download`).",
  },
  forbidden: {
    status: 403,
    retryable: false,
    on: "named",
    when: "The request names something the server refuses to serve, such as a path outside the `/docs` page's files.",
  },
  not_found: {
    status: 404,
    retryable: false,
    on: "named",
    when: "No such route (also a path that exists with another method: only CONNECT gets 405), or no such export for this tenant (another tenant's export is also not found). An operator route (`/admin/v1/…`) answers it to any request without a valid operator key, exactly as an unknown path, and for an unknown tenant, plan, key or export it names.",
  },
  tenant_disabled: {
    status: 403,
    retryable: false,
    on: "authenticated",
    when: "The tenant of the key, token or signed download link (or the tenant named in `X-Exportd-Tenant`) was disabled by the operator: every key and download link of it is refused until it is enabled again (a link still within its expiry works again then). Its queued and running exports were canceled. A link's answer names no tenant; a deleted tenant's links answer `not_found`.",
  },
  tenant_header_not_allowed: {
    status: 400,
    retryable: false,
    on: "authenticated",
    when: "The request carries `X-Exportd-Tenant` but its credential is not an operator key: only an operator key with the `admin:act` scope may act for a tenant. A tenant key always acts for its own tenant; drop the header.",
  },
  unknown_tenant: {
    status: 404,
    retryable: false,
    on: "authenticated",
    when: "The tenant named in `X-Exportd-Tenant` does not exist. Create it through the operator API first (`POST /admin/v1/tenants`).",
  },
  already_exists: {
    status: 409,
    retryable: false,
    on: "named",
    when: "The operator API was asked to create a tenant or plan whose name is taken. Change it with `PATCH` instead, or pick another name.",
  },
  method_not_allowed: {
    status: 405,
    retryable: false,
    on: "every",
    when: "The path exists but not with this method (or the method is one exportd never serves, such as CONNECT). The `Allow` header lists the methods the path takes.",
  },
  request_timeout: {
    status: 408,
    retryable: true,
    on: "every",
    when: "The client took too long to send the request's headers or body; the connection is closed.",
  },
  not_cancellable: {
    status: 409,
    retryable: false,
    on: "named",
    when: "The export already reached a final status and can no longer be canceled.",
  },
  export_not_ready: {
    status: 409,
    retryable: true,
    on: "named",
    when: "A download was asked for an export that has not succeeded (yet); `details` carries the current status.",
  },
  idempotency_conflict: {
    status: 409,
    retryable: false,
    on: "named",
    when: "The `Idempotency-Key` was already used in the last 24 hours with a different request body. Use a new key for a new request.",
  },
  export_expired: {
    status: 410,
    retryable: false,
    on: "named",
    when: "The export's files were deleted by the retention policy. Create a new export.",
  },
  precondition_failed: {
    status: 412,
    retryable: false,
    on: "named",
    when: "A download's `If-Match` or `If-Unmodified-Since` does not hold: the file is not the one the client expects.",
  },
  payload_too_large: {
    status: 413,
    retryable: false,
    on: "body",
    when: "The request body is larger than the server accepts.",
  },
  unsupported_media_type: {
    status: 415,
    retryable: false,
    on: "body",
    when: "The request body is not `application/json` in UTF-8 (a `charset` other than `utf-8`), or it carries a `Content-Encoding` other than `identity`: exportd does not decode compressed request bodies. `details` names the header.",
  },
  range_not_satisfiable: {
    status: 416,
    retryable: false,
    on: "named",
    when: "A download's `Range` lies outside the file; `Content-Range: bytes */SIZE` gives the size.",
  },
  expectation_failed: {
    status: 417,
    retryable: false,
    on: "every",
    when: "The `Expect` header asks for something other than `100-continue`.",
  },
  rate_limited: {
    status: 429,
    retryable: true,
    on: "authenticated",
    when: "The key sent more requests than its plan allows per minute, or the client address sent too many requests with a missing or invalid key. Wait for `Retry-After` seconds; the `RateLimit-*` headers show a key's budget.",
  },
  too_many_exports: {
    status: 429,
    retryable: true,
    on: "named",
    when: "The tenant already has as many exports waiting in the queue as its plan allows. Retry after some finish (`Retry-After`).",
  },
  header_too_large: {
    status: 431,
    retryable: false,
    on: "every",
    when: "The request line and headers together are larger than the server accepts (16 KiB); the connection is closed.",
  },
  internal_error: {
    status: 500,
    retryable: true,
    on: "every",
    when: "An unexpected failure inside exportd. The request id in the envelope finds it in the logs.",
  },
  maintenance: {
    status: 503,
    retryable: true,
    on: "write",
    when: "exportd is in maintenance: writes (create, cancel) are refused, reads and downloads keep working. Retry after `Retry-After` seconds.",
  },
  service_unavailable: {
    status: 503,
    retryable: true,
    on: "authenticated",
    when: "A dependency (metadata store, object store, a dataset's source for a dry run) cannot serve right now (also: the JWKS that verifies sign-in tokens was never fetched since start): the database is down, restarting, failing over or not answering in time, or its disk is full. Retry after `Retry-After` seconds. `/readyz` answers it too, with `details` naming each dependency that is not ready.",
  },
  too_many_downloads: {
    status: 503,
    retryable: true,
    on: "named",
    when: "This server is already sending as many downloads as it allows at once (`EXPORTD_MAX_DOWNLOADS`). Retry after `Retry-After` seconds; the link stays valid until it expires.",
  },
  too_many_event_streams: {
    status: 503,
    retryable: true,
    on: "named",
    when: "This server already holds as many progress streams (`GET /v1/exports/{id}/events`) open as it allows (`EXPORTD_MAX_EVENT_STREAMS`). Retry after `Retry-After` seconds, or poll `GET /v1/exports/{id}` meanwhile.",
  },
  too_many_rows: {
    status: null,
    retryable: false,
    on: null,
    when: "The export would pass the dataset's row limit. Narrow the range or the filters; it will never succeed as is.",
  },
  too_much_data: {
    status: null,
    retryable: false,
    on: null,
    when: "The export would pass the dataset's byte limit (`max_bytes`, counted before compression). Narrow the range, the filters or the columns; it will never succeed as is.",
  },
  source_error: {
    status: 502,
    retryable: false,
    on: "named",
    when: "The dataset's source refused the export for a reason that will not change on retry: a table or column is missing or has another type than declared, a stored value cannot be read, or a setting is refused. The message names the column, value or setting; the dataset's operator has to fix it. A failed export carries it; a dry run answers it with HTTP 502 (the source, not the request, is at fault). (A source that is away is waited on and ends `source_unavailable`.)",
  },
  source_unavailable: {
    status: null,
    retryable: true,
    on: null,
    when: "The dataset's source could not be reached, or stopped answering, for longer than the retry budget (`EXPORTD_STORAGE_RETRY_SECONDS` per attempt, on every attempt). Creating the export again later may succeed.",
  },
  storage_error: {
    status: null,
    retryable: true,
    on: null,
    when: "Writing the export's files failed (object store unreachable, disk full, no permission) and retries ran out.",
  },
  worker_crashed: {
    status: null,
    retryable: true,
    on: null,
    when: "The process running the export stopped (crash, kill, out of memory) several times in a row without finishing a part, so exportd stopped trying rather than keep crashing workers. The message says how many times. Creating it again may succeed; a narrower range or fewer columns makes it lighter.",
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/**
 * The codes of `details` entries: why one field is wrong. They never reuse a top-level code (a unit
 * test checks), so a client branching on a code cannot confuse the two. docs/errors.md lists them.
 */
export const DETAIL_CODES = {
  invalid: "The value breaks a rule the message states (pattern, length, allowed characters, count).",
  invalid_type: "The value has the wrong JSON type; the message names the expected one.",
  invalid_value: "The value is not one of the allowed values; the message lists them.",
  invalid_json: "The body is not valid JSON.",
  required: "A field that must be given is missing (for `part`: the export has several parts).",
  unknown_field: "The field is not part of the request.",
  unknown_dataset: "No dataset of this name for this key (`GET /v1/datasets` lists them).",
  unknown_bundle: "No bundle of this name in the server's config file; the message lists the bundles.",
  exclusive:
    "The field cannot be combined with another one given: exactly one of `dataset`, `datasets` and `bundle`; with `datasets` or `bundle`, filters and columns go with each dataset.",
  duplicate_dataset: "The dataset is listed twice in `datasets`; one export holds each dataset once.",
  too_many_datasets: "`datasets` is empty or lists more datasets than one export may hold (16).",
  not_in_plan: "The dataset is not part of the tenant's plan; the message lists the plans that have it.",
  unknown_column: "The dataset has no such column.",
  duplicate_column: "The column is listed twice.",
  unknown_filter: "The dataset has no such filter.",
  unsupported_format: "The dataset does not export in this format.",
  invalid_date: "Not an ISO 8601 date-time with offset, nor a date (nor `now`, for `to`).",
  empty_range: "`from` is not before `to`: the range holds no time.",
  range_too_long: "The range is longer than the dataset's `max_range_days`.",
  out_of_range: "The number lies outside the allowed range (a part index past the last part).",
  missing_scope: "The key lacks the scope named in the message.",
  unknown_plan: "No plan of this name (`GET /admin/v1/plans` lists them).",
  header_not_allowed:
    "The header named in `field` may only be sent with an operator key that has `admin:act`.",
  reused: "The `Idempotency-Key` was already used with another body.",
  unavailable:
    "The dependency named in `field` (`database`, `storage`, `disk`, `redis`) cannot serve right now (`/readyz`).",
} as const satisfies Record<string, string>;

/**
 * A detail code: one of DETAIL_CODES, or — for the `status` field of `export_not_ready` and
 * `not_cancellable` — the export's current status.
 */
export type DetailCode = keyof typeof DETAIL_CODES | ExportStatus;

/** One entry of an error's `details`: which field is wrong and why. */
export interface ErrorDetail {
  field: string;
  code: DetailCode;
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

/**
 * A failure that makes an export fail for good, without retries (`retryable: false`): a user error
 * (too_many_rows, too_much_data) or a source that will always refuse the request (source_error).
 */
export class ExportFailure extends AppError {}

export function invalidRequest(details: ErrorDetail[], message = "The request is not valid."): AppError {
  return new AppError("invalid_request", message, details);
}

/**
 * Seconds a client is asked to wait (`Retry-After`) when a dependency — the metadata store, the
 * object store, a dataset's source, the data disk, Redis — cannot serve: long enough not to hammer
 * it, short enough that a restarted database is used again within seconds.
 */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

/** 503 `service_unavailable` with `Retry-After`; `details` name the dependencies (for /readyz). */
export function serviceUnavailable(message: string, details: ErrorDetail[] = []): AppError {
  return new AppError("service_unavailable", message, details, {
    "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS),
  });
}

/** 403 `tenant_disabled`: the caller's tenant was disabled by the operator. */
export function tenantDisabled(): AppError {
  return new AppError(
    "tenant_disabled",
    "This tenant is disabled: its keys are refused until the operator enables it again.",
  );
}
