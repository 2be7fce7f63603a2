/**
 * /admin/v1/webhook_endpoints and /admin/v1/webhook_events: the operator's product-wide webhook
 * endpoints (owner null: they receive every tenant's events), the endpoints in trouble across all
 * tenants, and any tenant's event with its deliveries. Same request and answer shapes as the tenant
 * routes (http/webhooks/schemas.ts, presenter.ts); writes go through usecases/operator-webhooks.ts,
 * which audits them (`webhook_endpoint.<action>`, before/after without secrets).
 */
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { Type } from "typebox";
import * as audited from "../../usecases/operator-webhooks.js";
import {
  getWebhookEndpoint,
  listEndpointDeliveries,
  listEventDeliveries,
  listTroubledEndpoints,
  listWebhookEndpoints,
} from "../../usecases/webhook-endpoints.js";
import type { HttpDeps } from "../deps.js";
import { Nullable } from "../schemas.js";
import { presentEndpoint, presentEndpointWithSecret, presentEvent } from "../webhooks/presenter.js";
import { decodeDeliveryCursor, presentDeliveryPage, type WebhookRouteDeps } from "../webhooks/routes.js";
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
} from "../webhooks/schemas.js";
import { adminRead, adminWrite } from "./auth.js";
import { stamp, TAGS } from "./tenant-routes.js";

const ENDPOINT = { $ref: "WebhookEndpoint" };

/** An endpoint in trouble with its owner: a tenant's id, or null for a product-wide endpoint. */
const TroubledListSchema = Type.Object({
  data: Type.Array(
    Type.Object({
      tenant_id: Nullable(Type.String({ description: "The owning tenant's id; null: product-wide." })),
      endpoint: Type.Ref("WebhookEndpoint"),
    }),
  ),
});

/** What the operator's webhook routes use: the store (audit log), the clock, the webhook deps. */
export type AdminWebhookRouteDeps = Pick<HttpDeps, "store" | "clock"> & { webhooks: WebhookRouteDeps };

export function adminWebhookRoutes(app: FastifyInstance, deps: AdminWebhookRouteDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  // The public surface registers it too (http/webhooks/routes.ts); the admin-only one does not.
  if (!app.getSchemas().WebhookEndpoint) app.addSchema(EndpointSchema);
  const { clock } = deps;
  const useCase = { ...deps.webhooks, audit: deps.store };
  const read = adminRead();

  api.post(
    "/admin/v1/webhook_endpoints",
    {
      config: adminWrite("invalid_webhook_url"),
      schema: {
        tags: TAGS,
        summary: "Create a product-wide webhook endpoint",
        description:
          "Registers a URL that receives every tenant's export events, signed with the Standard Webhooks scheme. The answer carries the signing secret (`whsec_…`): it is shown only this once.",
        body: CreateEndpointBody,
        response: { 201: EndpointWithSecretSchema },
      },
    },
    async (request, reply) => {
      const { endpoint, secret } = await audited.createProductEndpoint(
        useCase,
        stamp(request, clock),
        request.body,
      );
      return reply
        .code(201)
        .header("location", `/admin/v1/webhook_endpoints/${endpoint.id}`)
        .send(presentEndpointWithSecret(endpoint, secret));
    },
  );

  api.get(
    "/admin/v1/webhook_endpoints",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "List product-wide webhook endpoints",
        description: "Those of the operator API, the CLI and the config file (`config:<name>`).",
        response: { 200: EndpointListSchema },
      },
    },
    async () => ({ data: (await listWebhookEndpoints(useCase, null)).map(presentEndpoint) }),
  );

  api.get(
    "/admin/v1/webhook_endpoints/troubled",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "Webhook endpoints in trouble, of any tenant",
        description:
          "Endpoints failing now (`failing_since` set) or disabled by a 410 or by failing too long, product-wide and every tenant's.",
        response: { 200: TroubledListSchema },
      },
    },
    async () => ({
      data: (await listTroubledEndpoints(useCase)).map((e) => ({
        tenant_id: e.tenantId,
        endpoint: presentEndpoint(e),
      })),
    }),
  );

  api.get(
    "/admin/v1/webhook_endpoints/:id",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "Get a product-wide webhook endpoint",
        params: EndpointIdParams,
        response: { 200: ENDPOINT },
      },
    },
    async (request) => presentEndpoint(await getWebhookEndpoint(useCase, null, request.params.id)),
  );

  api.patch(
    "/admin/v1/webhook_endpoints/:id",
    {
      config: adminWrite("invalid_webhook_url"),
      schema: {
        tags: TAGS,
        summary: "Change a product-wide webhook endpoint",
        description: "Changes its url, events or description; the secret stays.",
        params: EndpointIdParams,
        body: UpdateEndpointBody,
        response: { 200: ENDPOINT },
      },
    },
    async (request) =>
      presentEndpoint(
        await audited.updateProductEndpoint(useCase, stamp(request, clock), request.params.id, request.body),
      ),
  );

  for (const [action, enabled] of [
    ["enable", true],
    ["disable", false],
  ] as const) {
    api.post(
      `/admin/v1/webhook_endpoints/:id/${action}`,
      {
        config: adminWrite(),
        schema: {
          tags: TAGS,
          summary: enabled
            ? "Enable a product-wide webhook endpoint"
            : "Disable a product-wide webhook endpoint",
          description: enabled
            ? "Events from now on are delivered again (also after exportd disabled it for a 410 or for failing)."
            : "No event is delivered while it is disabled; its pending deliveries are abandoned (redeliver them by hand).",
          params: EndpointIdParams,
          response: { 200: ENDPOINT },
        },
      },
      async (request) =>
        presentEndpoint(
          await audited.setProductEndpointEnabled(useCase, stamp(request, clock), request.params.id, enabled),
        ),
    );
  }

  api.delete(
    "/admin/v1/webhook_endpoints/:id",
    {
      config: adminWrite(),
      schema: {
        tags: TAGS,
        summary: "Delete a product-wide webhook endpoint",
        params: EndpointIdParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      await audited.deleteProductEndpoint(useCase, stamp(request, clock), request.params.id);
      return reply.code(204).send();
    },
  );

  api.post(
    "/admin/v1/webhook_endpoints/:id/rotate_secret",
    {
      config: adminWrite(),
      schema: {
        tags: TAGS,
        summary: "Rotate a product-wide endpoint's signing secret",
        description:
          "A new secret (shown only now) signs from now on; for 24 hours the old one signs too, so `webhook-signature` carries both signatures until receivers switch.",
        params: EndpointIdParams,
        response: { 200: EndpointWithSecretSchema },
      },
    },
    async (request) => {
      const { endpoint, secret } = await audited.rotateProductEndpointSecret(
        useCase,
        stamp(request, clock),
        request.params.id,
      );
      return presentEndpointWithSecret(endpoint, secret);
    },
  );

  api.post(
    "/admin/v1/webhook_endpoints/:id/test",
    {
      config: adminWrite(),
      schema: {
        tags: TAGS,
        summary: "Send a test event to a product-wide endpoint",
        description:
          "Queues a `webhook.test` event for this endpoint alone, delivered, signed and logged like any other.",
        params: EndpointIdParams,
        response: { 202: TestEventSchema },
      },
    },
    async (request, reply) => {
      const event = await audited.sendProductTestEvent(useCase, stamp(request, clock), request.params.id);
      return reply.code(202).send({ object: "webhook_event" as const, id: event.id, type: event.type });
    },
  );

  api.get(
    "/admin/v1/webhook_endpoints/:id/deliveries",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "A product-wide endpoint's delivery log",
        description:
          "Deliveries to this endpoint (every tenant's events), newest first, each with every attempt.",
        params: EndpointIdParams,
        querystring: ListDeliveriesQuery,
        response: { 200: DeliveryListSchema },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 20;
      const cursor = request.query.cursor;
      const before = cursor === undefined ? undefined : decodeDeliveryCursor(cursor);
      const list = await listEndpointDeliveries(useCase, null, request.params.id, { before, limit });
      return presentDeliveryPage(list, limit);
    },
  );

  api.post(
    "/admin/v1/webhook_endpoints/:id/redeliver",
    {
      config: adminWrite("invalid_request"),
      schema: {
        tags: TAGS,
        summary: "Redeliver an event to a product-wide endpoint",
        description:
          "Sends the event (of any tenant) to this endpoint again now, with the same webhook-id and a fresh retry schedule.",
        params: EndpointIdParams,
        body: RedeliverBody,
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      const eventId = request.body.event_id;
      await audited.redeliverToProductEndpoint(useCase, stamp(request, clock), request.params.id, eventId);
      return reply.code(202).send({ object: "webhook_redelivery" as const, event_id: eventId });
    },
  );

  api.get(
    "/admin/v1/webhook_events/:id",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "An event of any tenant and its deliveries",
        description:
          "The event (its id is the `webhook-id`) and its deliveries to the product-wide endpoints (the tenant's own endpoints' deliveries are the tenant's to read).",
        params: EventIdParams,
        response: { 200: EventSchema },
      },
    },
    async (request) => {
      const { event, deliveries } = await listEventDeliveries(useCase, null, request.params.id);
      return presentEvent(event, deliveries);
    },
  );
}
