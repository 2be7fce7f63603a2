/**
 * The one parser of request bodies: JSON text in UTF-8 (RFC 8259 §8.1: JSON exchanged between
 * systems is UTF-8), not compressed, whose strings are well-formed Unicode. Everything a route
 * validates has passed through here, so no route checks encodings on its own.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { AppError, type ErrorDetail, invalidRequest } from "../domain/errors.js";

/** The `charset` parameter of a Content-Type, quoted or not (RFC 9110 §8.3.1). */
const CHARSET = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i;
/** The labels of UTF-8 in the WHATWG Encoding Standard that clients send. */
const UTF8 = /^utf-?8$/i;
/** A JSON escape of a surrogate code unit: the only way lone surrogates enter decoded UTF-8 text. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
/** A surrogate not part of a pair (with the `u` flag, a pair is one code point, not a Cs one). */
const LONE_SURROGATE = /\p{Cs}/u;
/** Fatal: bytes that are not UTF-8 are refused rather than read as U+FFFD. BOMs stay (JSON.parse refuses them). */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function unsupported(field: string, message: string): AppError {
  return new AppError("unsupported_media_type", message, [{ field, code: "invalid_value", message }]);
}

/**
 * Why the headers rule the body out (415 unsupported_media_type naming the header), or null: a
 * `charset` other than UTF-8, or a Content-Encoding other than `identity` — exportd does not
 * decode compressed request bodies.
 */
function headerProblem(request: FastifyRequest): AppError | null {
  const charset = CHARSET.exec(request.headers["content-type"] ?? "");
  const label = charset?.[1] ?? charset?.[2];
  if (label !== undefined && !UTF8.test(label)) {
    return unsupported("content-type", "The body must be JSON in UTF-8 (charset=utf-8 or no charset).");
  }
  const encoding = request.headers["content-encoding"];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== "identity") {
    return unsupported(
      "content-encoding",
      "Send the body uncompressed: Content-Encoding may only be identity.",
    );
  }
  return null;
}

/** The first string (value or key) in `value` that is not well-formed Unicode, as a field path. */
function illFormedField(value: unknown, path: string): string | null {
  if (typeof value === "string") return LONE_SURROGATE.test(value) ? path : null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = illFormedField(value[i], `${path}[${i}]`);
      if (found !== null) return found;
    }
    return null;
  }
  if (value !== null && typeof value === "object") {
    for (const [key, item] of Object.entries(value)) {
      const field = path === "body" ? key : `${path}.${key}`;
      if (LONE_SURROGATE.test(key)) return path;
      const found = illFormedField(item, field);
      if (found !== null) return found;
    }
  }
  return null;
}

/**
 * Replaces Fastify's JSON parser. An empty body is no body (POST …/cancel sent with a Content-Type
 * header); routes that need one say so. Errors: 415 unsupported_media_type (charset, encoding), 400
 * invalid_request (not UTF-8, not JSON, a string with a lone surrogate).
 */
export function installJsonBody(app: FastifyInstance): void {
  // Bodies are JSON only: anything else is 415, not a string that fails validation later.
  app.removeContentTypeParser("text/plain");
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, body, done) => {
    const refused = headerProblem(request);
    if (refused) return done(refused, undefined);
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch {
      return done(
        invalidRequest([{ field: "body", code: "invalid_json", message: "The body is not valid UTF-8." }]),
        undefined,
      );
    }
    if (text === "") return done(null, undefined);
    // Only a body with a surrogate escape can hold a lone surrogate: the walk is skipped otherwise.
    if (!SURROGATE_ESCAPE.test(text)) return parseJson(request, text, done);
    parseJson(request, text, (err, parsed) => {
      const field = err ? null : illFormedField(parsed, "body");
      if (field === null) return done(err, parsed);
      const detail: ErrorDetail = {
        field,
        code: "invalid",
        message: "The text holds a lone surrogate (\\ud800–\\udfff): not well-formed Unicode.",
      };
      done(invalidRequest([detail]), undefined);
    });
  });
}
