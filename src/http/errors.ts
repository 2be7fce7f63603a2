/**
 * Every error leaves through one envelope:
 *   {"error": {"code", "message", "request_id", "details": [{field, code, message}]}}
 * AppErrors carry their code; Fastify's own errors (bad JSON, validation, body too large) and an
 * unavailable metadata store (503 with Retry-After) are mapped here; anything else is logged and
 * answered as internal_error without its message.
 */
import { randomBytes } from "node:crypto";
import { type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  AppError,
  type ErrorCode,
  type ErrorDetail,
  invalidRequest,
  serviceUnavailable,
} from "../domain/errors.js";
import { StoreUnavailableError } from "../metadata/unavailable.js";

export interface ErrorEnvelope {
  error: { code: string; message: string; request_id: string; details: ErrorDetail[] };
}

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** "/filters/type/0" → "filters.type[0]"; a problem with the whole body or query names the context. */
function fieldPath(context: string, instancePath: string): string {
  let out = "";
  for (const p of instancePath.split("/").filter(Boolean))
    out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || context;
}

function join(base: string, context: string, name: string): string {
  return base === context ? name : `${base}.${name}`;
}

/**
 * Most `details` entries one answer carries: the first ones found. Without a cap a body of a few
 * kilobytes listing thousands of bad items (each one a detail, schema validation reports them all)
 * was answered with a detail each — an answer ~40 times the request's size.
 */
export const MAX_DETAILS = 100;

/**
 * Count limits of the schemas whose breach has its own detail code in the catalogue
 * (`minItems`/`maxItems` on these fields); others are `invalid`.
 */
const COUNT_CODES: Readonly<Record<string, ErrorDetail["code"]>> = { datasets: "too_many_datasets" };

export function validationDetails(context: string, errors: AjvError[]): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    if (details.length >= MAX_DETAILS) break;
    const base = fieldPath(context, e.instancePath);
    let detail: ErrorDetail;
    switch (e.keyword) {
      case "additionalProperties": {
        const name = String(e.params.additionalProperty);
        detail = {
          field: join(base, context, name),
          code: "unknown_field",
          message: `Unknown field "${name}".`,
        };
        break;
      }
      case "required": {
        const name = String(e.params.missingProperty);
        detail = { field: join(base, context, name), code: "required", message: `"${name}" is required.` };
        break;
      }
      case "type":
        detail = { field: base, code: "invalid_type", message: `Expected ${String(e.params.type)}.` };
        break;
      case "enum":
      case "const":
        detail = { field: base, code: "invalid_value", message: e.message ?? "Not an allowed value." };
        break;
      case "anyOf":
        continue; // The branches' own errors say more.
      case "minItems":
      case "maxItems": {
        const code = Object.hasOwn(COUNT_CODES, base) ? COUNT_CODES[base] : undefined;
        detail = { field: base, code: code ?? "invalid", message: e.message ?? "Invalid value." };
        break;
      }
      default:
        detail = { field: base, code: "invalid", message: e.message ?? "Invalid value." };
    }
    const id = `${detail.field}|${detail.code}`;
    if (!seen.has(id)) details.push(detail);
    seen.add(id);
  }
  return details;
}

/**
 * What a 4xx raised by Fastify itself or by a plugin (static files of /docs, rate limit, body
 * parsing) becomes: the catalogue's code for that status, with a message of ours. A 4xx not listed
 * is answered as 400 invalid_request; only errors without a 4xx status are bugs (internal_error).
 */
const CLIENT_ERRORS: Readonly<Record<number, readonly [ErrorCode, string]>> = {
  400: ["invalid_request", "The request is not valid."],
  401: ["unauthorized", "Send an API key as `Authorization: Bearer <key>`."],
  403: ["forbidden", "This path may not be read."],
  404: ["not_found", "Nothing is served at this path."],
  405: ["method_not_allowed", "This path does not take this method."],
  408: ["request_timeout", "The request took too long to arrive."],
  412: ["precondition_failed", "A precondition of the request does not hold."],
  413: ["payload_too_large", "The request body is too large."],
  415: ["unsupported_media_type", "Send the body as application/json."],
  416: ["range_not_satisfiable", "The requested range lies outside the file."],
  417: ["expectation_failed", "Only `Expect: 100-continue` is supported."],
  429: ["rate_limited", "Too many requests. Retry later."],
  431: ["header_too_large", "The request headers are too large."],
};

/** The envelope's code and message for a client error of this status (400 invalid_request when unlisted). */
export function clientError(status: number): readonly [ErrorCode, string] {
  return CLIENT_ERRORS[status] ?? (CLIENT_ERRORS[400] as readonly [ErrorCode, string]);
}

function toAppError(err: FastifyError): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof StoreUnavailableError) {
    return serviceUnavailable(
      "The database is not reachable right now. Retry after the Retry-After seconds.",
    );
  }
  if (err.validation) {
    const details = validationDetails(err.validationContext ?? "body", err.validation as AjvError[]);
    return invalidRequest(details);
  }
  switch (err.code) {
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return invalidRequest([
        { field: "body", code: "required", message: "The body is empty; send a JSON object." },
      ]);
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return invalidRequest([
        { field: "body", code: "invalid_json", message: "The body is not valid JSON." },
      ]);
  }
  if (err instanceof SyntaxError) {
    return invalidRequest([{ field: "body", code: "invalid_json", message: "The body is not valid JSON." }]);
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const [code, message] = clientError(status);
    return new AppError(code, message);
  }
  return new AppError(
    "internal_error",
    "Something went wrong on our side. The request id finds it in the logs.",
  );
}

/**
 * Request ids: a random per-process prefix and a counter. Unique across processes and restarts
 * (72 random bits), without drawing random bytes on every request.
 */
const requestIdPrefix = `req_${randomBytes(9).toString("base64url")}`;
let requestCounter = 0;
export function newRequestId(): string {
  requestCounter = (requestCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${requestIdPrefix}${requestCounter.toString(36).padStart(6, "0")}`;
}

function rawEnvelope(code: ErrorCode, message: string): { requestId: string; body: string } {
  const requestId = newRequestId();
  const envelope: ErrorEnvelope = { error: { code, message, request_id: requestId, details: [] } };
  return { requestId, body: JSON.stringify(envelope) };
}

/** For the few failures Node's server or the router answer before a request object exists. */
export function sendRawError(
  res: ServerResponse,
  status: number,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  const { requestId, body } = rawEnvelope(code, message);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    "x-request-id": requestId,
    "cache-control": "no-store",
  });
  res.end(body);
}

/**
 * Answers on a bare socket (no HTTP response object exists: bytes that are not HTTP, CONNECT) in
 * the envelope, then closes the connection.
 */
export function endSocketWithError(
  socket: Duplex,
  status: number,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  const { requestId, body } = rawEnvelope(code, message);
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  socket.end(
    `${head}content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Node's `clientError`: bytes that are not HTTP (400), headers past the size limit (431), a request
 * that did not arrive within the header or request timeout (408). Answered in the envelope unless a
 * response is already under way on the socket (then only closing it is honest).
 */
export function handleClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const current = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (!socket.writable || err.code === "ECONNRESET" || current?.headersSent) {
    socket.destroy();
    return;
  }
  const status =
    err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
  const [code, message] =
    status === 400 ? ["invalid_request" as const, "The request is not valid HTTP."] : clientError(status);
  endSocketWithError(socket, status, code, message);
}

export function sendError(reply: FastifyReply, request: FastifyRequest, err: AppError): FastifyReply {
  const body: ErrorEnvelope = {
    error: {
      code: err.code,
      message: err.message,
      request_id: String(request.id),
      details: err.details.length > MAX_DETAILS ? err.details.slice(0, MAX_DETAILS) : err.details,
    },
  };
  // Refused before its body arrived (a bad key, say): close after the answer rather than wait for a
  // body nobody reads, which a client that stops sending would answer with a second, 408, response.
  const { headers } = request;
  if (!request.raw.complete && (headers["transfer-encoding"] || (headers["content-length"] ?? "0") !== "0")) {
    reply.header("connection", "close");
  }
  return reply
    .code(err.status)
    .headers(err.headers)
    .header("x-request-id", String(request.id))
    .header("cache-control", "no-store")
    .send(body);
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((raw: FastifyError, request, reply) => {
    const err = toAppError(raw);
    if (err.code === "internal_error") request.log.error({ err: raw }, "unhandled error");
    return sendError(reply, request, err);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(
      reply,
      request,
      new AppError("not_found", `No route ${request.method} ${request.url.split("?")[0]}.`),
    ),
  );
}
