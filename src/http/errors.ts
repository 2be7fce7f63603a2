/**
 * Every error leaves through one envelope:
 *   {"error": {"code", "message", "request_id", "details": [{field, code, message}]}}
 * AppErrors carry their code; Fastify's own errors (bad JSON, validation, body too large) and an
 * unavailable metadata store (503 with Retry-After) are mapped here; anything else is logged and
 * answered as internal_error without its message.
 */
import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError, type ErrorCode, type ErrorDetail, invalidRequest } from "../domain/errors.js";
import { StoreUnavailableError } from "../store/unavailable.js";

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

export function validationDetails(context: string, errors: AjvError[]): ErrorDetail[] {
  const details: ErrorDetail[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
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
      default:
        detail = { field: base, code: "invalid", message: e.message ?? "Invalid value." };
    }
    const id = `${detail.field}|${detail.code}`;
    if (!seen.has(id)) details.push(detail);
    seen.add(id);
  }
  return details;
}

/** Seconds a client is asked to wait while the metadata store is unavailable. */
const STORE_RETRY_AFTER_SECONDS = 5;

function toAppError(err: FastifyError): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof StoreUnavailableError) {
    return new AppError(
      "service_unavailable",
      "The database is not reachable right now. Retry after the Retry-After seconds.",
      [],
      { "retry-after": String(STORE_RETRY_AFTER_SECONDS) },
    );
  }
  if (err.validation) {
    const details = validationDetails(err.validationContext ?? "body", err.validation as AjvError[]);
    return invalidRequest(details);
  }
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new AppError("payload_too_large", "The request body is too large.");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new AppError("unsupported_media_type", "Send the body as application/json.");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return invalidRequest([
        { field: "body", code: "required", message: "The body is empty; send a JSON object." },
      ]);
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return invalidRequest([
        { field: "body", code: "invalid_json", message: "The body is not valid JSON." },
      ]);
  }
  if (err instanceof SyntaxError || err.statusCode === 400) {
    return invalidRequest([{ field: "body", code: "invalid_json", message: "The body is not valid JSON." }]);
  }
  if (err.statusCode === 413) return new AppError("payload_too_large", "The request body is too large.");
  if (err.statusCode === 415)
    return new AppError("unsupported_media_type", "Send the body as application/json.");
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

/** For the few failures the router answers before a request object exists. */
export function sendRawError(res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  const { requestId, body } = rawEnvelope(code, message);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "x-request-id": requestId });
  res.end(body);
}

/** Bytes that are not HTTP at all: answer on the socket, in the envelope, and close it. */
export function handleClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (!socket.writable || err.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const status = tooLarge ? 431 : 400;
  const { requestId, body } = rawEnvelope(
    "invalid_request",
    tooLarge ? "The request headers are too large." : "The request is not valid HTTP.",
  );
  socket.end(
    `HTTP/1.1 ${status} ${tooLarge ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
      `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export function sendError(reply: FastifyReply, request: FastifyRequest, err: AppError): FastifyReply {
  const body: ErrorEnvelope = {
    error: { code: err.code, message: err.message, request_id: String(request.id), details: err.details },
  };
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
