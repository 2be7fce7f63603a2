/**
 * /admin/v1 tenants, their API keys, and plans: each route validates, calls its use case
 * (usecases/tenants.ts, usecases/api-keys.ts) with the operator as the audit actor, and presents
 * the result (presenter.ts). Only operator credentials reach them (auth.ts).
 */
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { AppError } from "../../domain/errors.js";
import { SCOPES, type Scope } from "../../domain/scopes.js";
import type { TenantLimits } from "../../domain/tenant.js";
import type { AuditStamp, TenantChange } from "../../metadata/types.js";
import { issueTenantKey, listApiKeys, revokeTenantKey, rotateTenantKey } from "../../usecases/api-keys.js";
import { stampOf } from "../../usecases/audit.js";
import * as tenants from "../../usecases/tenants.js";
import type { HttpDeps } from "../deps.js";
import { adminRead, adminWrite, operatorOf } from "./auth.js";
import { presentApiKey, presentPlan, presentTenant } from "./presenter.js";
import {
  ApiKeyListSchema,
  ChangePlanBody,
  ChangeTenantBody,
  CreateKeyBody,
  CreatePlanBody,
  CreateTenantBody,
  DeleteResponse,
  DisableResponse,
  IssuedKeySchema,
  KeyParams,
  PageQuery,
  PlanListSchema,
  PlanNameParams,
  PlanSchema,
  TenantListSchema,
  TenantNameParams,
  TenantSchema,
} from "./schemas.js";

export const TAGS = ["operator"];

/** What the operator routes use. */
export type AdminRouteDeps = Pick<HttpDeps, "store" | "storage" | "clock">;

/** The audit stamp of this request's operator, now. */
export function stamp(request: FastifyRequest, clock: () => number): AuditStamp {
  return stampOf(operatorOf(request).actor, clock());
}

type LimitsInput = {
  max_running?: number | null;
  max_queued?: number | null;
  requests_per_minute?: number | null;
};

function overrides(l: LimitsInput | undefined): TenantChange["overrides"] {
  return { maxRunning: l?.max_running, maxQueued: l?.max_queued, requestsPerMinute: l?.requests_per_minute };
}

function noKey(prefix: string): AppError {
  return new AppError("not_found", `No active key with prefix ${prefix} for this tenant.`);
}

export function tenantRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, clock } = deps;
  const useCaseDeps = (request: FastifyRequest) => ({
    operator: store,
    exports: store,
    storage: deps.storage,
    clock,
    log: request.log,
  });
  const read = adminRead();
  const write = adminWrite();

  api.get(
    "/admin/v1/tenants",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "List tenants",
        description: "By name. Pass `next_cursor` as `cursor` for the next page.",
        querystring: PageQuery,
        response: { 200: TenantListSchema },
      },
    },
    async (request) => {
      const page = await tenants.listTenants(
        useCaseDeps(request),
        request.query.cursor,
        request.query.limit ?? 20,
      );
      return { data: page.tenants.map(presentTenant), next_cursor: page.nextCursor };
    },
  );

  api.post(
    "/admin/v1/tenants",
    {
      config: adminWrite("already_exists"),
      schema: {
        tags: TAGS,
        summary: "Create a tenant",
        description: "On the `default` plan unless `plan` names another; `limits` override the plan's.",
        body: CreateTenantBody,
        response: { 201: TenantSchema },
      },
    },
    async (request, reply) => {
      const { name, plan, limits } = request.body;
      const tenant = await tenants.createTenant(
        useCaseDeps(request),
        name,
        { plan, overrides: overrides(limits) },
        stamp(request, clock),
      );
      return reply.code(201).send(presentTenant(tenant));
    },
  );

  api.get(
    "/admin/v1/tenants/:name",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "Get a tenant",
        params: TenantNameParams,
        response: { 200: TenantSchema },
      },
    },
    async (request) => presentTenant(await tenants.getTenant(useCaseDeps(request), request.params.name)),
  );

  api.patch(
    "/admin/v1/tenants/:name",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Change a tenant's plan or limits",
        description: "A limit of null clears the tenant's override. Takes effect within a second.",
        params: TenantNameParams,
        body: ChangeTenantBody,
        response: { 200: TenantSchema },
      },
    },
    async (request) => {
      const { plan, limits } = request.body;
      const change = { plan, overrides: overrides(limits) };
      return presentTenant(
        await tenants.changeTenant(useCaseDeps(request), request.params.name, change, stamp(request, clock)),
      );
    },
  );

  api.post(
    "/admin/v1/tenants/:name/disable",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Disable a tenant",
        description:
          "Every key of the tenant is refused (403 `tenant_disabled`) within a second, and its queued and running exports are canceled.",
        params: TenantNameParams,
        response: { 200: DisableResponse },
      },
    },
    async (request) => {
      const result = await tenants.disableTenant(
        useCaseDeps(request),
        request.params.name,
        stamp(request, clock),
      );
      return { tenant: presentTenant(result.tenant), canceled_exports: result.canceled };
    },
  );

  api.post(
    "/admin/v1/tenants/:name/enable",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Enable a tenant",
        params: TenantNameParams,
        response: { 200: TenantSchema },
      },
    },
    async (request) =>
      presentTenant(
        await tenants.enableTenant(useCaseDeps(request), request.params.name, stamp(request, clock)),
      ),
  );

  api.delete(
    "/admin/v1/tenants/:name",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Delete a tenant",
        description:
          "Removes the tenant and everything it owns: its exports' files in the object store, its exports, parts, idempotency keys and API keys. Cannot be undone.",
        params: TenantNameParams,
        response: { 200: DeleteResponse },
      },
    },
    async (request) => {
      const { name } = request.params;
      const deleted = await tenants.deleteTenant(useCaseDeps(request), name, stamp(request, clock));
      return {
        object: "tenant_deleted" as const,
        name,
        deleted_exports: deleted.exports,
        deleted_keys: deleted.keys,
      };
    },
  );

  api.get(
    "/admin/v1/tenants/:name/keys",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "List a tenant's API keys",
        description: "Revoked keys included. Never the keys themselves.",
        params: TenantNameParams,
        response: { 200: ApiKeyListSchema },
      },
    },
    async (request) => {
      const keys = await listApiKeys(store, request.params.name);
      if (!keys) throw new AppError("not_found", `No tenant "${request.params.name}".`);
      return { data: keys.map(presentApiKey) };
    },
  );

  api.post(
    "/admin/v1/tenants/:name/keys",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Create an API key for a tenant",
        description: "The answer holds the key itself, this once; only its hash is stored.",
        params: TenantNameParams,
        body: CreateKeyBody,
        response: { 201: IssuedKeySchema },
      },
    },
    async (request, reply) => {
      const scopes: Scope[] = request.body.scopes ?? [...SCOPES];
      const at = clock();
      const issued = await issueTenantKey(
        store,
        request.params.name,
        scopes,
        stampOf(operatorOf(request).actor, at),
      );
      if (!issued) throw new AppError("not_found", `No tenant "${request.params.name}".`);
      const shown = { prefix: issued.prefix, last4: issued.key.slice(-4), scopes, createdAt: at };
      return reply
        .code(201)
        .send({ ...presentApiKey({ ...shown, lastUsedAt: null, revokedAt: null }), key: issued.key });
    },
  );

  api.post(
    "/admin/v1/tenants/:name/keys/:prefix/revoke",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Revoke an API key",
        description: "The key stops working within a second on every process.",
        params: KeyParams,
        response: { 204: noContent() },
      },
    },
    async (request, reply) => {
      const { name, prefix } = request.params;
      if (!(await revokeTenantKey(store, name, prefix, stamp(request, clock)))) throw noKey(prefix);
      return reply.code(204).send();
    },
  );

  api.post(
    "/admin/v1/tenants/:name/keys/:prefix/rotate",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Rotate an API key",
        description: "A new key with the same scopes (shown this once); the old one stops within a second.",
        params: KeyParams,
        response: { 201: IssuedKeySchema },
      },
    },
    async (request, reply) => {
      const { name, prefix } = request.params;
      const at = clock();
      const issued = await rotateTenantKey(store, name, prefix, stampOf(operatorOf(request).actor, at));
      if (!issued) throw noKey(prefix);
      const fresh = await store.findApiKeyByPrefix(issued.prefix);
      if (!fresh) throw new Error("a rotated key vanished");
      return reply.code(201).send({ ...presentApiKey(fresh), key: issued.key });
    },
  );

  api.get(
    "/admin/v1/plans",
    { config: read, schema: { tags: TAGS, summary: "List plans", response: { 200: PlanListSchema } } },
    async (request) => ({ data: (await tenants.listPlans(useCaseDeps(request))).map(presentPlan) }),
  );

  api.post(
    "/admin/v1/plans",
    {
      config: adminWrite("already_exists"),
      schema: {
        tags: TAGS,
        summary: "Create a plan",
        body: CreatePlanBody,
        response: { 201: PlanSchema },
      },
    },
    async (request, reply) => {
      const { name, limits } = request.body;
      const plan = {
        name,
        limits: {
          maxRunning: limits.max_running,
          maxQueued: limits.max_queued,
          requestsPerMinute: limits.requests_per_minute,
        },
      };
      await tenants.createPlan(useCaseDeps(request), plan, stamp(request, clock));
      return reply.code(201).send(presentPlan(plan));
    },
  );

  api.patch(
    "/admin/v1/plans/:name",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Change a plan",
        description:
          "Every tenant on the plan gets the new limits within a second (unless it overrides them).",
        params: PlanNameParams,
        body: ChangePlanBody,
        response: { 200: PlanSchema },
      },
    },
    async (request) => {
      const l = request.body.limits;
      const limits: Partial<TenantLimits> = {};
      if (l.max_running !== undefined) limits.maxRunning = l.max_running;
      if (l.max_queued !== undefined) limits.maxQueued = l.max_queued;
      if (l.requests_per_minute !== undefined) limits.requestsPerMinute = l.requests_per_minute;
      return presentPlan(
        await tenants.changePlan(useCaseDeps(request), request.params.name, limits, stamp(request, clock)),
      );
    },
  );
}

/** A 204 answer: no body. */
function noContent() {
  return { type: "null", description: "Done; no body." };
}
