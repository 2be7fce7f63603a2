/**
 * Webhook endpoints: create (the secret is shown once), list, read, change, enable and disable,
 * delete, rotate the secret, send a test event, read the delivery log and redeliver by hand. Every
 * function takes the endpoint's owner — a tenant's id, or null for a product-wide endpoint (the
 * operator's: CLI, config file, operator API) — so a tenant only ever reaches its own endpoints.
 * The tenant routes (http/webhooks/routes.ts) and the operator's routes and CLI call these.
 */

import type { ConfigWebhookEndpoint } from "../config/index.js";
import { AppError, invalidRequest } from "../domain/errors.js";
import { newId } from "../domain/ids.js";
import {
  DEFAULT_EVENT_TYPES,
  type ExportEventType,
  generateWebhookSecret,
  ROTATION_OVERLAP_MS,
  TEST_EVENT_TYPE,
  type WebhookEndpoint,
  type WebhookEvent,
} from "../domain/webhooks.js";
import type {
  DeliveryWithAttempts,
  EndpointOwner,
  WebhookEndpointChange,
  WebhooksPort,
} from "../metadata/types.js";
import type { SecretBox } from "../webhooks/secret-box.js";
import {
  checkUrlForm,
  type Resolver,
  resolveAllowed,
  type UrlPolicy,
  WebhookUrlError,
} from "../webhooks/sender.js";

export interface WebhookEndpointDeps {
  store: WebhooksPort;
  secrets: SecretBox;
  policy: UrlPolicy;
  /** Name resolution for the create-time address check (the system's by default). */
  resolve?: Resolver;
  clock: () => number;
  /** Wakes this process's deliverers (a test event, a redelivery). */
  onDeliveryDue?: () => void;
}

/** A new endpoint and its secret: the only time the secret is shown. */
export interface CreatedEndpoint {
  endpoint: WebhookEndpoint;
  secret: string;
}

function notFound(): AppError {
  return new AppError("not_found", "No such webhook endpoint.");
}

/**
 * 400 invalid_webhook_url unless the URL's form is allowed and its host is not, and does not
 * resolve to, a forbidden address. A name that does not resolve (yet) is accepted: the delivery
 * resolves again and refuses then.
 */
export async function checkWebhookUrl(
  deps: Pick<WebhookEndpointDeps, "policy" | "resolve">,
  raw: string,
): Promise<string> {
  try {
    const url = checkUrlForm(raw, deps.policy);
    await resolveAllowed(url, deps.policy, deps.resolve).catch((err: unknown) => {
      if (err instanceof WebhookUrlError && /does not resolve|resolves to no address/.test(err.message))
        return;
      throw err;
    });
    return url.toString();
  } catch (err) {
    if (err instanceof WebhookUrlError)
      throw new AppError("invalid_webhook_url", `The webhook URL is refused: ${err.message}`, [
        { field: "url", code: "invalid", message: err.message },
      ]);
    throw err;
  }
}

export async function createWebhookEndpoint(
  deps: WebhookEndpointDeps,
  owner: EndpointOwner,
  input: { url: string; events?: ExportEventType[]; description?: string },
): Promise<CreatedEndpoint> {
  const url = await checkWebhookUrl(deps, input.url);
  const now = deps.clock();
  const id = newId();
  const secret = generateWebhookSecret();
  const endpoint: WebhookEndpoint = {
    id,
    tenantId: owner,
    url,
    description: input.description ?? "",
    events: [...new Set(input.events ?? DEFAULT_EVENT_TYPES)].sort(),
    enabled: true,
    disabledReason: null,
    disabledAt: null,
    failingSince: null,
    source: owner === null ? "operator" : "api",
    createdAt: now,
    updatedAt: now,
    previousSecretExpiresAt: null,
  };
  await deps.store.insertWebhookEndpoint({ ...endpoint, sealedSecret: deps.secrets.seal(secret, id) });
  return { endpoint, secret };
}

export async function getWebhookEndpoint(
  deps: Pick<WebhookEndpointDeps, "store">,
  owner: EndpointOwner,
  id: string,
): Promise<WebhookEndpoint> {
  const found = await deps.store.getWebhookEndpoint(owner, id);
  if (!found) throw notFound();
  return found;
}

export function listWebhookEndpoints(
  deps: Pick<WebhookEndpointDeps, "store">,
  owner: EndpointOwner,
): Promise<WebhookEndpoint[]> {
  return deps.store.listWebhookEndpoints(owner);
}

export async function updateWebhookEndpoint(
  deps: WebhookEndpointDeps,
  owner: EndpointOwner,
  id: string,
  change: WebhookEndpointChange,
): Promise<WebhookEndpoint> {
  const checked = { ...change };
  if (change.url !== undefined) checked.url = await checkWebhookUrl(deps, change.url);
  if (change.events !== undefined) checked.events = [...new Set(change.events)].sort();
  const updated = await deps.store.updateWebhookEndpoint(owner, id, checked, deps.clock());
  if (!updated) throw notFound();
  return updated;
}

/** Enables or disables (by hand) an endpoint; disabling abandons its pending deliveries. */
export async function setWebhookEndpointEnabled(
  deps: WebhookEndpointDeps,
  owner: EndpointOwner,
  id: string,
  enabled: boolean,
): Promise<WebhookEndpoint> {
  const ok = await deps.store.setWebhookEndpointEnabled(
    owner,
    id,
    enabled,
    enabled ? null : "manual",
    deps.clock(),
  );
  if (!ok) throw notFound();
  return getWebhookEndpoint(deps, owner, id);
}

export async function deleteWebhookEndpoint(
  deps: Pick<WebhookEndpointDeps, "store">,
  owner: EndpointOwner,
  id: string,
): Promise<void> {
  if (!(await deps.store.deleteWebhookEndpoint(owner, id))) throw notFound();
}

/** A new secret (shown once); the old one keeps signing beside it for 24 hours. */
export async function rotateWebhookSecret(
  deps: WebhookEndpointDeps,
  owner: EndpointOwner,
  id: string,
): Promise<CreatedEndpoint> {
  const now = deps.clock();
  const secret = generateWebhookSecret();
  const ok = await deps.store.rotateWebhookSecret(
    owner,
    id,
    deps.secrets.seal(secret, id),
    now + ROTATION_OVERLAP_MS,
    now,
  );
  if (!ok) throw notFound();
  return { endpoint: await getWebhookEndpoint(deps, owner, id), secret };
}

/** Queues a `webhook.test` event for this endpoint alone (delivered like any other). Returns the event id. */
export async function sendTestEvent(
  deps: WebhookEndpointDeps,
  owner: EndpointOwner,
  id: string,
): Promise<WebhookEvent> {
  const endpoint = await getWebhookEndpoint(deps, owner, id);
  const event: WebhookEvent = {
    id: newId(),
    type: TEST_EVENT_TYPE,
    tenantId: owner ?? "",
    exportId: null,
    createdAt: deps.clock(),
    data: JSON.stringify({ endpoint_id: endpoint.id, message: "A test event from exportd." }),
  };
  await deps.store.insertWebhookTestEvent(event, endpoint.id);
  deps.onDeliveryDue?.();
  return event;
}

/** The endpoint's delivery log, newest first. */
export async function listEndpointDeliveries(
  deps: Pick<WebhookEndpointDeps, "store">,
  owner: EndpointOwner,
  id: string,
  query: { before?: string; limit: number },
): Promise<DeliveryWithAttempts[]> {
  await getWebhookEndpoint(deps, owner, id);
  return deps.store.listEndpointDeliveries(id, query);
}

/** An event's deliveries to the owner's endpoints (404 when the event is not the owner's tenant's). */
export async function listEventDeliveries(
  deps: Pick<WebhookEndpointDeps, "store">,
  owner: EndpointOwner,
  eventId: string,
): Promise<{ event: WebhookEvent; deliveries: DeliveryWithAttempts[] }> {
  const event = await deps.store.getWebhookEvent(eventId);
  if (!event || (owner !== null && event.tenantId !== owner))
    throw new AppError("not_found", "No such webhook event.");
  return { event, deliveries: await deps.store.listEventDeliveries(owner, eventId) };
}

/**
 * Sends an event to an endpoint again, now, with a fresh schedule (the same webhook-id). The event
 * must be the endpoint's tenant's (any tenant's for a product-wide endpoint).
 */
export async function redeliverWebhook(
  deps: WebhookEndpointDeps,
  owner: EndpointOwner,
  endpointId: string,
  eventId: string,
): Promise<void> {
  const endpoint = await getWebhookEndpoint(deps, owner, endpointId);
  const event = await deps.store.getWebhookEvent(eventId);
  const tenantMatches = event && (owner === null || event.tenantId === owner);
  // A test event belongs to the endpoint it was made for.
  const testMatches = event && (event.type !== TEST_EVENT_TYPE || event.data.includes(`"${endpoint.id}"`));
  if (!event || !tenantMatches || !testMatches) throw new AppError("not_found", "No such webhook event.");
  if (!endpoint.enabled)
    throw invalidRequest(
      [{ field: "id", code: "invalid", message: "The endpoint is disabled." }],
      "The endpoint is disabled: enable it first, then redeliver.",
    );
  await deps.store.redeliverWebhook(eventId, endpointId, deps.clock());
  deps.onDeliveryDue?.();
}

/** The operator's view: endpoints failing now, or disabled by a 410 or by failing too long. */
export function listTroubledEndpoints(deps: Pick<WebhookEndpointDeps, "store">): Promise<WebhookEndpoint[]> {
  return deps.store.listTroubledWebhookEndpoints();
}

/** Makes the store's config-declared endpoints (`config:<name>`) those of the configuration. */
export async function syncConfigEndpoints(
  deps: Pick<WebhookEndpointDeps, "store" | "secrets" | "clock">,
  endpoints: readonly ConfigWebhookEndpoint[],
): Promise<void> {
  await deps.store.syncConfigWebhookEndpoints(
    endpoints.map((e) => {
      const id = `config:${e.name}`;
      return {
        id,
        url: e.url,
        events: e.events,
        description: e.description,
        sealedSecret: deps.secrets.seal(e.secret, id),
      };
    }),
    deps.clock(),
  );
}
