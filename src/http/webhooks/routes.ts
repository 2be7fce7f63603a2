/**
 * /v1/webhook_endpoints and /v1/webhook_events: a tenant's own webhook endpoints (create, list,
 * read, change, enable, disable, delete, rotate the secret, send a test event), their delivery log
 * and redelivery. Each route validates, calls its use case (usecases/webhook-endpoints.ts) with the
 * caller's tenant as the owner, and presents the result (presenter.ts).
 */
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { type ErrorCode, invalidRequest } from "../../domain/errors.js";
import type { DeliveryWithAttempts, WebhooksPort } from "../../metadata/types.js";
import {
  createWebhookEndpoint,
  deleteWebhookEndpoint,
  getWebhookEndpoint,
  listEndpointDeliveries,
  listEventDeliveries,
  listWebhookEndpoints,
  redeliverWebhook,
  rotateWebhookSecret,
  sendTestEvent,
  setWebhookEndpointEnabled,
  updateWebhookEndpoint,
  type WebhookEndpointDeps,
} from "../../usecases/webhook-endpoints.js";
import { callerOf } from "../auth.js";
import { presentDelivery, presentEndpoint, presentEndpointWithSecret, presentEvent } from "./presenter.js";
import {
  Accepted,
  CreateEndpointBody,
  Deleted,
  DeliveryListSchema,
  EndpointIdParams,
  EndpointListSchema,
  EndpointSchema,
  EndpointWithSecretSchema,
  EventIdParams,
  EventSchema,
  ListDeliveriesQuery,
  RedeliverBody,
  TestEventSchema,
  UpdateEndpointBody,
} from "./schemas.js";

const TAGS = ["webhooks"];
const ENDPOINT = { $ref: "WebhookEndpoint" };

/** A delivery-log page cursor: the last delivery id of the page, opaque to the client. */
export function decodeDeliveryCursor(cursor: string): string {
  const id = Buffer.from(cursor, "base64url").toString();
  if (!/^[0-9a-f-]{36}:[0-9a-z:-]{1,100}$/.test(id))
    throw invalidRequest([{ field: "cursor", code: "invalid", message: "Not a cursor from this API." }]);
  return id;
}

/** A page of the delivery log and the cursor of the next (null when the page is not full). */
export function presentDeliveryPage(list: DeliveryWithAttempts[], limit: number) {
  const last = list.length === limit ? list[list.length - 1] : undefined;
  return {
    data: list.map(presentDelivery),
    next_cursor: last ? Buffer.from(last.id).toString("base64url") : null,
  };
}

/** What the webhook routes use: the WebhooksPort, the secret box, the URL policy. */
export type WebhookRouteDeps = Omit<WebhookEndpointDeps, "store"> & { store: WebhooksPort };

export function webhookRoutes(app: FastifyInstance, deps: WebhookRouteDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  app.addSchema(EndpointSchema);
  const read = { scope: "webhooks:read" as const };
  const named = (errors: ErrorCode[]) => ({ scope: "webhooks:write" as const, errors });

  api.post(
    "/v1/webhook_endpoints",
    {
      config: named(["invalid_webhook_url"]),
      schema: {
        tags: TAGS,
        summary: "Create a webhook endpoint",
        description:
          "Registers a URL that receives this tenant's export events, signed with the Standard Webhooks scheme. The answer carries the signing secret (`whsec_…`): it is shown only this once.",
        body: CreateEndpointBody,
        response: { 201: EndpointWithSecretSchema },
      },
    },
    async (request, reply) => {
      const { endpoint, secret } = await createWebhookEndpoint(
        deps,
        callerOf(request).tenantId,
        request.body,
      );
      return reply
        .code(201)
        .header("location", `/v1/webhook_endpoints/${endpoint.id}`)
        .send(presentEndpointWithSecret(endpoint, secret));
    },
  );

  api.get(
    "/v1/webhook_endpoints",
    {
      config: read,
      schema: { tags: TAGS, summary: "List webhook endpoints", response: { 200: EndpointListSchema } },
    },
    async (request) => ({
      data: (await listWebhookEndpoints(deps, callerOf(request).tenantId)).map(presentEndpoint),
    }),
  );

  api.get(
    "/v1/webhook_endpoints/:id",
    {
      config: { ...read, errors: ["not_found" as const] },
      schema: {
        tags: TAGS,
        summary: "Get a webhook endpoint",
        params: EndpointIdParams,
        response: { 200: ENDPOINT },
      },
    },
    async (request) =>
      presentEndpoint(await getWebhookEndpoint(deps, callerOf(request).tenantId, request.params.id)),
  );

  api.patch(
    "/v1/webhook_endpoints/:id",
    {
      config: named(["not_found", "invalid_webhook_url"]),
      schema: {
        tags: TAGS,
        summary: "Change a webhook endpoint",
        description: "Changes its url, events or description; the secret stays.",
        params: EndpointIdParams,
        body: UpdateEndpointBody,
        response: { 200: ENDPOINT },
      },
    },
    async (request) =>
      presentEndpoint(
        await updateWebhookEndpoint(deps, callerOf(request).tenantId, request.params.id, request.body),
      ),
  );

  for (const [action, enabled] of [
    ["enable", true],
    ["disable", false],
  ] as const) {
    api.post(
      `/v1/webhook_endpoints/:id/${action}`,
      {
        config: named(["not_found"]),
        schema: {
          tags: TAGS,
          summary: enabled ? "Enable a webhook endpoint" : "Disable a webhook endpoint",
          description: enabled
            ? "Events from now on are delivered again (also after exportd disabled it for a 410 or for failing)."
            : "No event is delivered while it is disabled; its pending deliveries are abandoned (redeliver them by hand).",
          params: EndpointIdParams,
          response: { 200: ENDPOINT },
        },
      },
      async (request) =>
        presentEndpoint(
          await setWebhookEndpointEnabled(deps, callerOf(request).tenantId, request.params.id, enabled),
        ),
    );
  }

  api.delete(
    "/v1/webhook_endpoints/:id",
    {
      config: named(["not_found"]),
      schema: {
        tags: TAGS,
        summary: "Delete a webhook endpoint",
        params: EndpointIdParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      await deleteWebhookEndpoint(deps, callerOf(request).tenantId, request.params.id);
      return reply.code(204).send();
    },
  );

  api.post(
    "/v1/webhook_endpoints/:id/rotate_secret",
    {
      config: named(["not_found"]),
      schema: {
        tags: TAGS,
        summary: "Rotate the signing secret",
        description:
          "A new secret (shown only now) signs from now on; for 24 hours the old one signs too, so `webhook-signature` carries both signatures until receivers switch.",
        params: EndpointIdParams,
        response: { 200: EndpointWithSecretSchema },
      },
    },
    async (request) => {
      const { endpoint, secret } = await rotateWebhookSecret(
        deps,
        callerOf(request).tenantId,
        request.params.id,
      );
      return presentEndpointWithSecret(endpoint, secret);
    },
  );

  api.post(
    "/v1/webhook_endpoints/:id/test",
    {
      config: named(["not_found"]),
      schema: {
        tags: TAGS,
        summary: "Send a test event",
        description:
          "Queues a `webhook.test` event for this endpoint alone, delivered, signed and logged like any other.",
        params: EndpointIdParams,
        response: { 202: TestEventSchema },
      },
    },
    async (request, reply) => {
      const event = await sendTestEvent(deps, callerOf(request).tenantId, request.params.id);
      return reply.code(202).send({ object: "webhook_event" as const, id: event.id, type: event.type });
    },
  );

  api.get(
    "/v1/webhook_endpoints/:id/deliveries",
    {
      config: { ...read, errors: ["not_found" as const] },
      schema: {
        tags: TAGS,
        summary: "The endpoint's delivery log",
        description:
          "Deliveries to this endpoint, newest first, each with every attempt (time, status, duration, error, the first KiB of the answer).",
        params: EndpointIdParams,
        querystring: ListDeliveriesQuery,
        response: { 200: DeliveryListSchema },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 20;
      const before =
        request.query.cursor === undefined ? undefined : decodeDeliveryCursor(request.query.cursor);
      const list = await listEndpointDeliveries(deps, callerOf(request).tenantId, request.params.id, {
        before,
        limit,
      });
      return presentDeliveryPage(list, limit);
    },
  );

  api.post(
    "/v1/webhook_endpoints/:id/redeliver",
    {
      config: named(["not_found"]),
      schema: {
        tags: TAGS,
        summary: "Redeliver an event",
        description:
          "Sends the event to this endpoint again now, with the same webhook-id and a fresh retry schedule.",
        params: EndpointIdParams,
        body: RedeliverBody,
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      await redeliverWebhook(deps, callerOf(request).tenantId, request.params.id, request.body.event_id);
      return reply.code(202).send({ object: "webhook_redelivery" as const, event_id: request.body.event_id });
    },
  );

  api.get(
    "/v1/webhook_events/:id",
    {
      config: { ...read, errors: ["not_found" as const] },
      schema: {
        tags: TAGS,
        summary: "An event and its deliveries",
        description:
          "The event (its id is the `webhook-id`) and its deliveries to this tenant's endpoints, each with every attempt.",
        params: EventIdParams,
        response: { 200: EventSchema },
      },
    },
    async (request) => {
      const { event, deliveries } = await listEventDeliveries(
        deps,
        callerOf(request).tenantId,
        request.params.id,
      );
      return presentEvent(event, deliveries);
    },
  );
}
