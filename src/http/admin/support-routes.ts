/**
 * /admin/v1 support views across tenants (exports: list, get, cancel), the audit log, and
 * maintenance on/off. Each route validates, calls its use case and presents the result.
 */
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { listAudit } from "../../usecases/audit.js";
import { readMaintenance, switchMaintenance } from "../../usecases/maintenance.js";
import { cancelAnyExport, getAnyExport, listAnyExports } from "../../usecases/support-exports.js";
import { adminRead, adminWrite } from "./auth.js";
import { presentAudit, presentMaintenance, presentTenantExport } from "./presenter.js";
import {
  AnyExportsQuery,
  AuditListSchema,
  AuditQuery,
  ExportIdParams,
  MaintenanceBody,
  MaintenanceSchema,
  TenantExportListSchema,
  TenantExportSchema,
} from "./schemas.js";
import { type AdminRouteDeps, stamp, TAGS } from "./tenant-routes.js";

export function supportRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, clock } = deps;
  const supportDeps = { operator: store, exports: store, storage: deps.storage, clock };
  const read = adminRead();
  const write = adminWrite();

  api.get(
    "/admin/v1/exports",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "List exports of any tenant",
        description: "Newest first, optionally of one tenant, status or dataset. Never with download links.",
        querystring: AnyExportsQuery,
        response: { 200: TenantExportListSchema },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await listAnyExports(supportDeps, { ...q, limit: q.limit ?? 20 });
      return { data: await Promise.all(page.exports.map(presentTenantExport)), next_cursor: page.nextCursor };
    },
  );

  api.get(
    "/admin/v1/exports/:id",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "Get an export of any tenant",
        params: ExportIdParams,
        response: { 200: TenantExportSchema },
      },
    },
    async (request) => presentTenantExport(await getAnyExport(supportDeps, request.params.id)),
  );

  api.post(
    "/admin/v1/exports/:id/cancel",
    {
      config: adminWrite("not_cancellable"),
      schema: {
        tags: TAGS,
        summary: "Cancel an export of any tenant",
        description: "As the tenant's own cancel: stops a queued or running export and deletes its files.",
        params: ExportIdParams,
        response: { 200: TenantExportSchema },
      },
    },
    async (request: FastifyRequest<{ Params: { id: string } }>) =>
      presentTenantExport(
        await cancelAnyExport(supportDeps, request.params.id, stamp(request, clock), request.log),
      ),
  );

  api.get(
    "/admin/v1/audit",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "List audit entries",
        description: "Every operator write, newest first; filter by tenant name or action.",
        querystring: AuditQuery,
        response: { 200: AuditListSchema },
      },
    },
    async (request) => {
      const q = request.query;
      const page = await listAudit(store, { ...q, limit: q.limit ?? 20 });
      return { data: page.entries.map(presentAudit), next_cursor: page.nextCursor };
    },
  );

  api.get(
    "/admin/v1/maintenance",
    {
      config: read,
      schema: {
        tags: TAGS,
        summary: "Get maintenance mode",
        description:
          "The state stored by the operator (EXPORTD_MAINTENANCE forces it on in a process besides).",
        response: { 200: MaintenanceSchema },
      },
    },
    async () => presentMaintenance(await readMaintenance(store)),
  );

  api.put(
    "/admin/v1/maintenance",
    {
      config: write,
      schema: {
        tags: TAGS,
        summary: "Switch maintenance mode",
        description:
          "While on, writes of the public API answer 503 `maintenance`; every process follows within 2 seconds.",
        body: MaintenanceBody,
        response: { 200: MaintenanceSchema },
      },
    },
    async (request) => {
      const { enabled, retry_after_seconds: retryAfterSeconds = 300, message = "" } = request.body;
      const state = enabled ? { enabled, retryAfterSeconds, message } : null;
      return presentMaintenance(await switchMaintenance(store, state, stamp(request, clock)));
    },
  );
}
