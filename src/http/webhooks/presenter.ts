/** Webhook endpoints, deliveries and events as the API answers them — never a raw store record, never a sealed secret. */
import type { WebhookEndpoint, WebhookEvent } from "../../domain/webhooks.js";
import type { DeliveryWithAttempts } from "../../metadata/types.js";

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

export function presentEndpoint(e: WebhookEndpoint) {
  return {
    id: e.id,
    object: "webhook_endpoint" as const,
    url: e.url,
    description: e.description,
    events: e.events,
    enabled: e.enabled,
    disabled_reason: e.disabledReason,
    disabled_at: iso(e.disabledAt),
    failing_since: iso(e.failingSince),
    created_at: iso(e.createdAt) as string,
    updated_at: iso(e.updatedAt) as string,
    previous_secret_expires_at: iso(e.previousSecretExpiresAt),
  };
}

/** Create and rotate only: the secret, shown once. */
export function presentEndpointWithSecret(e: WebhookEndpoint, secret: string) {
  return { ...presentEndpoint(e), secret };
}

export function presentDelivery(d: DeliveryWithAttempts) {
  return {
    id: d.id,
    object: "webhook_delivery" as const,
    event_id: d.eventId,
    event_type: d.eventType,
    endpoint_id: d.endpointId,
    state: d.state,
    attempts: d.attempts,
    next_attempt_at: iso(d.nextAttemptAt),
    created_at: iso(d.createdAt) as string,
    delivered_at: iso(d.deliveredAt),
    last_status: d.lastStatus,
    last_error: d.lastError,
    log: d.log.map((a) => ({
      attempted_at: iso(a.attemptedAt) as string,
      status: a.status,
      duration_ms: a.durationMs,
      error: a.error,
      response: a.response,
    })),
  };
}

export function presentEvent(event: WebhookEvent, deliveries: DeliveryWithAttempts[]) {
  return {
    id: event.id,
    object: "webhook_event" as const,
    type: event.type,
    export_id: event.exportId,
    created_at: iso(event.createdAt) as string,
    deliveries: deliveries.map(presentDelivery),
  };
}
