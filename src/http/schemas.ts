/**
 * Schema pieces every resource shares: the error envelope, nullable and timestamp types, response
 * header helpers. Each resource's own schemas live beside its routes (http/<resource>/schemas.ts);
 * the OpenAPI document is generated from them.
 */
import { type Static, type TSchema, Type } from "typebox";

/**
 * `T | null` as one schema with a type array rather than anyOf: fast-json-stringify serializes an
 * anyOf by validating the value against each branch with ajv, on every response.
 */
export const Nullable = <T extends TSchema & { type: string }>(schema: T) =>
  Type.Unsafe<Static<T> | null>({ ...schema, type: [schema.type, "null"] });
export const Timestamp = Type.String({ format: "date-time" });
export const NullableTimestamp = Nullable(Timestamp);

export const ErrorDetailSchema = Type.Object({
  field: Type.String(),
  code: Type.String(),
  message: Type.String(),
});

export const ErrorEnvelopeSchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: "Stable lowercase code; see docs/errors.md." }),
      message: Type.String(),
      request_id: Type.String(),
      details: Type.Array(ErrorDetailSchema),
    }),
  },
  { $id: "Error" },
);

/**
 * A header a route declares on one of its responses: required unless `optional` (openapi.ts turns
 * the mark into the header's `required`). Error envelopes and the headers every answer carries by
 * rule (X-Request-Id, RateLimit-*, Retry-After) are derived in openapi.ts, not declared per route.
 */
export function responseHeader(
  description: string,
  { optional = false, schema = { type: "string" } }: { optional?: boolean; schema?: object } = {},
): Record<string, unknown> {
  return { ...schema, description, ...(optional ? { "x-optional": true } : {}) };
}

/**
 * `schema` with response headers for the document. A shared schema (one with an `$id`) is referenced
 * rather than copied, so the document holds it once; the static type stays the schema's own.
 */
export function withHeaders<T extends TSchema>(schema: T, headers: Record<string, unknown>): T {
  const { $id } = schema as { $id?: unknown };
  const body = typeof $id === "string" ? { $ref: $id } : schema;
  return { ...body, headers } as unknown as T;
}

/** A response without a body (a redirect, a 304), with its headers. */
export function noBody(description: string, headers: Record<string, unknown>) {
  return { type: "null", description, headers };
}
