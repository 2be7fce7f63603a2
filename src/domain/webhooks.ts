/**
 * Webhooks: the events exportd sends, the endpoints that receive them, the delivery schedule and
 * the rules a delivery's answer is judged by. Pure rules; the store keeps endpoints, events and
 * deliveries (metadata/), the sender posts them (webhooks/), the use cases decide (usecases/).
 */
import { randomBytes } from "node:crypto";
import { STATUS } from "./status.js";

/**
 * Event types. Each export event is written in the same transaction as the status change it
 * reports (the store's outbox); `export.started` only for the first run (a retry or a takeover of
 * a crashed worker sends none). `webhook.test` is only ever sent by "send a test event".
 */
export const EXPORT_EVENT_TYPES = [
  "export.created",
  "export.started",
  "export.succeeded",
  "export.failed",
  "export.canceled",
  "export.expired",
] as const;
export type ExportEventType = (typeof EXPORT_EVENT_TYPES)[number];
export const TEST_EVENT_TYPE = "webhook.test";
export type EventType = ExportEventType | typeof TEST_EVENT_TYPE;

/** The event each status reached by a status change sends (`queued` only at create). */
export const EVENT_OF_STATUS = {
  [STATUS.queued]: "export.created",
  [STATUS.running]: "export.started",
  [STATUS.succeeded]: "export.succeeded",
  [STATUS.failed]: "export.failed",
  [STATUS.canceled]: "export.canceled",
  [STATUS.expired]: "export.expired",
} as const satisfies Record<string, ExportEventType>;

/** What an endpoint subscribes to when its creator names no events: the ends of an export. */
export const DEFAULT_EVENT_TYPES: readonly ExportEventType[] = [
  "export.succeeded",
  "export.failed",
  "export.canceled",
  "export.expired",
];

export function isExportEventType(value: string): value is ExportEventType {
  return (EXPORT_EVENT_TYPES as readonly string[]).includes(value);
}

/**
 * How the store keeps an endpoint's event types: `,a,b,` so that one `LIKE '%,type,%'` matches on
 * both engines (event types hold no LIKE wildcard: letters and dots only).
 */
export function encodeEventTypes(types: readonly ExportEventType[]): string {
  return `,${[...new Set(types)].sort().join(",")},`;
}

export function decodeEventTypes(text: string): ExportEventType[] {
  return text.split(",").filter(isExportEventType);
}

/** The LIKE pattern that matches an encoded list holding `type`. */
export function eventTypePattern(type: EventType): string {
  return `%,${type},%`;
}

/** Why an endpoint is disabled: by its owner, by a 410 Gone answer, or after failing for days. */
export const DISABLED_REASONS = ["manual", "gone", "failing"] as const;
export type DisabledReason = (typeof DISABLED_REASONS)[number];

/** A webhook endpoint. `tenantId` null: product-wide (the operator's; receives every tenant's events). */
export interface WebhookEndpoint {
  id: string;
  tenantId: string | null;
  url: string;
  description: string;
  events: ExportEventType[];
  enabled: boolean;
  disabledReason: DisabledReason | null;
  disabledAt: number | null;
  /** Since when every attempt failed (null: the last attempt succeeded, or none was made). */
  failingSince: number | null;
  /** `api` (a tenant's), `operator` (CLI / operator API) or `config` (declared in the config file). */
  source: "api" | "operator" | "config";
  createdAt: number;
  updatedAt: number;
  /** Until when the previous secret still signs (a rotation's 24 hours); null when none. */
  previousSecretExpiresAt: number | null;
}

/** An endpoint with its sealed secrets (only the delivery use case and the store see these). */
export interface WebhookEndpointSecrets {
  secret: string;
  previousSecret: string | null;
  previousSecretExpiresAt: number | null;
}

/** How long the old secret keeps signing after a rotation (both signatures are sent meanwhile). */
export const ROTATION_OVERLAP_MS = 24 * 3_600_000;

/** A new signing secret in the Standard Webhooks form: `whsec_` and 32 random bytes in base64. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/**
 * The wait before each retry of a delivery, in milliseconds, before jitter: about three days in
 * all (sum ≈ 75.6 h) over 15 attempts (the first at once). Doubling-ish early (a blip is retried
 * within seconds), capped at 12 hours late.
 */
export const RETRY_DELAYS_MS: readonly number[] = [
  5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 43_200_000,
  43_200_000, 43_200_000, 43_200_000, 43_200_000,
];

/**
 * When to try again after `attempts` failed attempts (1 = the first failed), or null when the
 * schedule is spent. Jitter: ±20 % uniformly (`random` in [0, 1)), so receivers that come back
 * are not hit by every queued delivery in the same second. `scale` shrinks the schedule (tests).
 */
export function nextRetryDelay(
  attempts: number,
  scale = 1,
  random: () => number = Math.random,
): number | null {
  const base = RETRY_DELAYS_MS[attempts - 1];
  if (base === undefined) return null;
  return Math.max(1, Math.round(base * scale * (0.8 + 0.4 * random())));
}

/** What one attempt's answer means for the delivery. */
export type AttemptVerdict = "delivered" | "retry" | "gone";

/** 2xx delivers; 410 Gone disables the endpoint; anything else (3xx included: no redirect is followed) retries. */
export function judgeAnswer(status: number | null): AttemptVerdict {
  if (status !== null && status >= 200 && status < 300) return "delivered";
  if (status === 410) return "gone";
  return "retry";
}

/** How much of a receiver's answer the delivery log keeps. */
export const RESPONSE_LOG_BYTES = 1024;

/**
 * Delivery states: pending (to be tried, maybe later), delivered (a 2xx came back), abandoned (the
 * schedule is spent, or its endpoint was disabled or answered 410). A redelivery by hand makes any
 * of them pending again.
 */
export const DELIVERY_STATES = ["pending", "delivered", "abandoned"] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];
/** The states by name, so callers never spell one. */
export const DELIVERY = {
  pending: "pending",
  delivered: "delivered",
  abandoned: "abandoned",
} as const satisfies { [S in DeliveryState]: S };

/** A delivery of one event to one endpoint: its webhook-id is the event id, the same on every retry. */
export interface WebhookDelivery {
  id: string;
  eventId: string;
  endpointId: string;
  eventType: EventType;
  state: DeliveryState;
  attempts: number;
  nextAttemptAt: number | null;
  createdAt: number;
  deliveredAt: number | null;
  lastStatus: number | null;
  lastError: string | null;
}

/** One attempt of a delivery, as the delivery log keeps it. */
export interface WebhookAttempt {
  id: string;
  deliveryId: string;
  eventId: string;
  endpointId: string;
  attemptedAt: number;
  /** HTTP status of the answer; null when none came (refused address, timeout, connection error). */
  status: number | null;
  durationMs: number;
  error: string | null;
  /** The first RESPONSE_LOG_BYTES of the answer's body, as text. */
  response: string | null;
}

/** An event as the outbox keeps it: the export as it was right after the status change. */
export interface WebhookEvent {
  id: string;
  type: EventType;
  tenantId: string;
  exportId: string | null;
  createdAt: number;
  /** JSON: the ExportRecord after the change (export events) or a small object (test events). */
  data: string;
}
