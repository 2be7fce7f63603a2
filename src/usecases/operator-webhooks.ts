/**
 * The operator's writes to product-wide webhook endpoints (owner null), each followed by its audit
 * entry: action `webhook_endpoint.<create|update|enable|disable|delete|rotate_secret|test|redeliver>`,
 * tenant null, target the endpoint id, before/after the endpoint record (never a secret: the sealed
 * secret is not part of WebhookEndpoint). The operator API (http/admin/webhook-routes.ts) and the
 * CLI (`exportd webhooks …`) both write through these, so both are audited alike. Errors are the
 * endpoint use cases' (not_found, invalid_webhook_url, invalid_request).
 */
import type { WebhookEndpoint, WebhookEvent } from "../domain/webhooks.js";
import type { AuditStamp, OperatorPort, WebhookEndpointChange } from "../metadata/types.js";
import { recordAudit } from "./audit.js";
import {
  type CreatedEndpoint,
  createWebhookEndpoint,
  deleteWebhookEndpoint,
  getWebhookEndpoint,
  redeliverWebhook,
  rotateWebhookSecret,
  sendTestEvent,
  setWebhookEndpointEnabled,
  updateWebhookEndpoint,
  type WebhookEndpointDeps,
} from "./webhook-endpoints.js";

/** The endpoint use cases' deps plus the audit log. */
export type OperatorWebhookDeps = WebhookEndpointDeps & { audit: Pick<OperatorPort, "appendAudit"> };

/** The audit action of a write to a webhook endpoint. */
export type WebhookAuditAction =
  | "create"
  | "update"
  | "enable"
  | "disable"
  | "delete"
  | "rotate_secret"
  | "test"
  | "redeliver";

function audit(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  action: WebhookAuditAction,
  target: string,
  before: WebhookEndpoint | null,
  after: unknown,
): Promise<void> {
  return recordAudit(deps.audit, stamp, {
    action: `webhook_endpoint.${action}`,
    tenant: null,
    target,
    before,
    after,
  });
}

/** Creates a product-wide endpoint (the secret is in the answer only, never in the audit entry). */
export async function createProductEndpoint(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  input: Parameters<typeof createWebhookEndpoint>[2],
): Promise<CreatedEndpoint> {
  const created = await createWebhookEndpoint(deps, null, input);
  await audit(deps, stamp, "create", created.endpoint.id, null, created.endpoint);
  return created;
}

export async function updateProductEndpoint(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  id: string,
  change: WebhookEndpointChange,
): Promise<WebhookEndpoint> {
  const before = await getWebhookEndpoint(deps, null, id);
  const after = await updateWebhookEndpoint(deps, null, id, change);
  await audit(deps, stamp, "update", id, before, after);
  return after;
}

export async function setProductEndpointEnabled(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  id: string,
  enabled: boolean,
): Promise<WebhookEndpoint> {
  const before = await getWebhookEndpoint(deps, null, id);
  const after = await setWebhookEndpointEnabled(deps, null, id, enabled);
  await audit(deps, stamp, enabled ? "enable" : "disable", id, before, after);
  return after;
}

export async function deleteProductEndpoint(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  id: string,
): Promise<void> {
  const before = await getWebhookEndpoint(deps, null, id);
  await deleteWebhookEndpoint(deps, null, id);
  await audit(deps, stamp, "delete", id, before, null);
}

/** A new secret (in the answer only); the audit entry records the new overlap deadline. */
export async function rotateProductEndpointSecret(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  id: string,
): Promise<CreatedEndpoint> {
  const before = await getWebhookEndpoint(deps, null, id);
  const rotated = await rotateWebhookSecret(deps, null, id);
  await audit(deps, stamp, "rotate_secret", id, before, rotated.endpoint);
  return rotated;
}

export async function sendProductTestEvent(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  id: string,
): Promise<WebhookEvent> {
  const event = await sendTestEvent(deps, null, id);
  await audit(deps, stamp, "test", id, null, { event_id: event.id });
  return event;
}

export async function redeliverToProductEndpoint(
  deps: OperatorWebhookDeps,
  stamp: AuditStamp,
  id: string,
  eventId: string,
): Promise<void> {
  await redeliverWebhook(deps, null, id, eventId);
  await audit(deps, stamp, "redeliver", id, null, { event_id: eventId });
}
