/** Request and response schemas of /v1/webhook_endpoints and /v1/webhook_events. */
import { Type } from "typebox";
import { DELIVERY_STATES, DISABLED_REASONS, EXPORT_EVENT_TYPES } from "../../domain/webhooks.js";
import { Nullable, NullableTimestamp, noBody, Timestamp } from "../schemas.js";

const EventTypes = Type.Array(Type.Enum(EXPORT_EVENT_TYPES), {
  minItems: 1,
  maxItems: EXPORT_EVENT_TYPES.length,
  uniqueItems: true,
  description:
    "Event types to receive. Default: export.succeeded, export.failed, export.canceled, export.expired.",
});
const Url = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: "Where events are POSTed: https (http only where the operator allows it), a public address.",
});
const Description = Type.String({ maxLength: 500 });

export const EndpointIdParams = Type.Object({ id: Type.String({ format: "uuid" }) });
export const EventIdParams = Type.Object({ id: Type.String({ format: "uuid" }) });

export const CreateEndpointBody = Type.Object(
  { url: Url, events: Type.Optional(EventTypes), description: Type.Optional(Description) },
  { additionalProperties: false },
);

export const UpdateEndpointBody = Type.Object(
  { url: Type.Optional(Url), events: Type.Optional(EventTypes), description: Type.Optional(Description) },
  { additionalProperties: false, minProperties: 1 },
);

export const RedeliverBody = Type.Object(
  {
    event_id: Type.String({ format: "uuid", description: "The event to send again (the same webhook-id)." }),
  },
  { additionalProperties: false },
);

/** An endpoint as every answer shows it (never its secret). */
const endpointFields = {
  id: Type.String(),
  object: Type.Literal("webhook_endpoint"),
  url: Type.String(),
  description: Type.String(),
  events: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  disabled_reason: Nullable(
    Type.String({
      description: `Why it is disabled: ${DISABLED_REASONS.join(", ")} — by its owner, because the receiver answered 410, or because every attempt failed for days.`,
    }),
  ),
  disabled_at: NullableTimestamp,
  failing_since: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
  previous_secret_expires_at: Nullable(
    Type.String({
      format: "date-time",
      description: "Until when the previous secret signs too (rotation).",
    }),
  ),
};

export const EndpointSchema = Type.Object(endpointFields, { $id: "WebhookEndpoint" });

/** The endpoint and its signing secret: answered by create and rotate only. */
export const EndpointWithSecretSchema = Type.Object({
  ...endpointFields,
  secret: Type.String({
    description: "The signing secret (`whsec_…`), shown only now: verify `webhook-signature` with it.",
  }),
});

export const EndpointListSchema = Type.Object({ data: Type.Array(Type.Ref("WebhookEndpoint")) });

const AttemptSchema = Type.Object({
  attempted_at: Timestamp,
  status: Nullable(Type.Integer({ description: "The answer's HTTP status; null when none came." })),
  duration_ms: Type.Integer(),
  error: Nullable(Type.String()),
  response: Nullable(Type.String({ description: "The first KiB of the answer's body." })),
});

export const DeliverySchema = Type.Object({
  id: Type.String(),
  object: Type.Literal("webhook_delivery"),
  event_id: Type.String({ description: "Also the `webhook-id` header of every attempt." }),
  event_type: Type.String(),
  endpoint_id: Type.String(),
  state: Type.Enum(DELIVERY_STATES),
  attempts: Type.Integer(),
  next_attempt_at: NullableTimestamp,
  created_at: Timestamp,
  delivered_at: NullableTimestamp,
  last_status: Nullable(Type.Integer()),
  last_error: Nullable(Type.String()),
  log: Type.Array(AttemptSchema),
});

export const ListDeliveriesQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })),
    cursor: Type.Optional(
      Type.String({ maxLength: 300, description: "`next_cursor` of the previous page." }),
    ),
  },
  { additionalProperties: false },
);

export const DeliveryListSchema = Type.Object({
  data: Type.Array(DeliverySchema),
  next_cursor: Nullable(Type.String()),
});

export const EventSchema = Type.Object({
  id: Type.String(),
  object: Type.Literal("webhook_event"),
  type: Type.String(),
  export_id: Nullable(Type.String()),
  created_at: Timestamp,
  deliveries: Type.Array(DeliverySchema),
});

export const TestEventSchema = Type.Object({
  object: Type.Literal("webhook_event"),
  id: Type.String({ description: "The test event's id (its webhook-id)." }),
  type: Type.String(),
});

export const Accepted = Type.Object({ object: Type.Literal("webhook_redelivery"), event_id: Type.String() });

export const Deleted = noBody("The endpoint is deleted (with its deliveries and their log).", {});
