/** /v1/exports: create, list, status, cancel and download. Every query is scoped to the caller's tenant. */

import { createHash } from "node:crypto";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import { canonicalJson } from "../../domain/canonical-json.js";
import { normalizeCreateRequest } from "../../domain/dataset.js";
import { AppError, invalidRequest } from "../../domain/errors.js";
import { downloadRefusal, type ExportRecord, isFinal, newExport } from "../../domain/export.js";
import { isUuid, newId } from "../../domain/ids.js";
import { partDownloadName } from "../../domain/naming.js";
import type { ExportWithPosition } from "../../metadata/types.js";
import { purgeExportFiles } from "../../purge.js";
import { type AuthContext, callerOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { PartLinks } from "../part-links.js";
import { presentDryRun, presentExport } from "../presenters.js";
import {
  CancelResponse,
  CreateExportBody,
  CreateExportHeaders,
  CreateExportResponses,
  DownloadQuery,
  DownloadResponses,
  ExportIdParams,
  ExportListSchema,
  ListExportsQuery,
  StatusResponse,
} from "../schemas.js";
import { TtlCache } from "../ttl-cache.js";

const TAGS = ["exports"];
const FINAL_EXPORT_CACHE_MS = 1_000;

function encodeCursor(id: string): string {
  return Buffer.from(id).toString("base64url");
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, "base64url").toString();
  if (!isUuid(id))
    throw invalidRequest([{ field: "cursor", code: "invalid", message: "Not a cursor from this API." }]);
  return id;
}

export function exportRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { store, datasets, config, clock } = deps;
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const links = new PartLinks(deps.storage, config.linkTtlSeconds, clock);

  // A final export changes only when the sweeper expires it, so it is read again at most once a
  // second; queued and running ones are read every time, so progress is never stale.
  const finalExports = new TtlCache<ExportRecord>(FINAL_EXPORT_CACHE_MS);
  /**
   * Serialized status documents of the cached final records, by record object: one map for keys that
   * may download (signed links included), one for the others, so a link never reaches a key without
   * `exports:download`.
   */
  const finalDocuments = {
    withLinks: new WeakMap<ExportRecord, { second: number; body: string }>(),
    withoutLinks: new WeakMap<ExportRecord, { second: number; body: string }>(),
  };
  /** Signed links only for keys that may download; the others see the parts without them. */
  const linksFor = (caller: AuthContext): PartLinks | null =>
    caller.scopes.includes("exports:download") ? links : null;
  const findExport = async (tenantId: string, id: string): Promise<ExportRecord | ExportWithPosition> => {
    const cacheKey = `${tenantId}/${id}`;
    const now = clock();
    const cached = finalExports.get(cacheKey, now);
    if (cached) return cached;
    // The status read brings the queue position along (one query).
    const record = isUuid(id) ? await store.readExport(tenantId, id) : null;
    if (!record) throw new AppError("not_found", "No export with this id.");
    if (isFinal(record.status)) finalExports.set(cacheKey, record, now);
    return record;
  };
  /** Only a queued export has a place in the queue; asking for the others costs a query for nothing. */
  const queuePosition = (
    record: ExportRecord | ExportWithPosition,
  ): Promise<number | null> | number | null =>
    "queuePosition" in record
      ? record.queuePosition
      : record.status === "queued"
        ? store.queuePosition(record.tenantId, record.id)
        : null;

  api.post(
    "/v1/exports",
    {
      config: {
        scope: "exports:write",
        errors: ["invalid_date_range", "plan_required", "idempotency_conflict", "too_many_exports"],
      },
      schema: {
        tags: TAGS,
        summary: "Create an export",
        description:
          'Queues an export and answers 202 with its status and a Location header to poll. With `"dry_run": true` it only validates and estimates, and answers 200. With an `Idempotency-Key` header, repeating the same request within 24 hours returns the same export (`Idempotent-Replayed: true`); the same key with another body is a 409.',
        headers: CreateExportHeaders,
        body: CreateExportBody,
        response: CreateExportResponses,
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const now = clock();
      const exportRequest = normalizeCreateRequest(request.body, datasets.descriptors, now, caller.plan);
      const dataset = datasets.get(exportRequest.dataset);
      if (!dataset) throw new Error("a validated dataset vanished");
      // Authentication already read the tenant; no second lookup on every create.
      const tenant = { id: caller.tenantId, name: caller.tenantName };
      // A source that is down does not stop an export from being queued (the worker retries), but a dry
      // run has nothing to answer without it.
      const estimatedRows = await dataset.estimateRows(tenant, exportRequest, now).catch((err: unknown) => {
        request.log.warn({ err, dataset: dataset.descriptor.name }, "estimating rows failed");
        if (request.body.dry_run) {
          throw new AppError("service_unavailable", "The dataset's database cannot be reached right now.");
        }
        return null;
      });
      if (request.body.dry_run) return reply.code(200).send(presentDryRun(dataset.descriptor, estimatedRows));
      const record = newExport({
        id: newId(),
        tenantId: caller.tenantId,
        request: exportRequest,
        now,
        estimatedRows,
      });
      const idempotencyKey = request.headers["idempotency-key"];
      const outcome = await store.createExport(record, {
        maxQueued: caller.limits.maxQueued,
        // The body as validated (defaults filled in), canonical: key order and spacing do not matter.
        idempotency: idempotencyKey
          ? {
              key: idempotencyKey,
              requestHash: createHash("sha256").update(canonicalJson(request.body)).digest("hex"),
            }
          : null,
      });
      switch (outcome.kind) {
        case "idempotency_conflict":
          throw new AppError(
            "idempotency_conflict",
            "This Idempotency-Key was used with a different request body in the last 24 hours.",
            [{ field: "idempotency-key", code: "reused", message: "Use a new key for a new request." }],
          );
        case "queue_full":
          throw new AppError(
            "too_many_exports",
            `${outcome.queued} exports are already waiting; the limit is ${caller.limits.maxQueued}.`,
            [],
            { "retry-after": "30" },
          );
        case "replayed":
          reply.header("idempotent-replayed", "true");
          break;
        case "created":
          request.log.info({ export_id: record.id, dataset: record.dataset }, "export queued");
          deps.onExportQueued();
      }
      const created = outcome.record;
      return reply
        .code(202)
        .header("location", `/v1/exports/${created.id}`)
        .send(await presentExport(created, null, await queuePosition(created)));
    },
  );

  api.get(
    "/v1/exports",
    {
      config: { scope: "exports:read" },
      schema: {
        tags: TAGS,
        summary: "List exports",
        description: "Newest first. Pass `next_cursor` as `cursor` for the next page.",
        querystring: ListExportsQuery,
        response: { 200: ExportListSchema },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const limit = request.query.limit ?? 20;
      const rows = await store.listExports(caller.tenantId, {
        status: request.query.status,
        dataset: request.query.dataset,
        before: request.query.cursor ? decodeCursor(request.query.cursor) : undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: await Promise.all(
          page.map(async (r) => presentExport(r, linksFor(caller), await queuePosition(r))),
        ),
        next_cursor: rows.length > limit && last ? encodeCursor(last.id) : null,
      };
    },
  );

  api.get(
    "/v1/exports/:id",
    {
      config: { scope: "exports:read", errors: ["not_found"] },
      schema: {
        tags: TAGS,
        summary: "Get an export",
        description: "Status, honest progress, and the parts with fresh signed links once succeeded.",
        params: ExportIdParams,
        response: { 200: StatusResponse },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const record = await findExport(caller.tenantId, request.params.id);
      const callerLinks = linksFor(caller);
      reply.header("cache-control", "no-store");
      if (!isFinal(record.status))
        return reply.send(await presentExport(record, callerLinks, await queuePosition(record)));
      // A final export's document (links included) is the same for every request within a second:
      // serialize it once per cached record, second and whether it carries links.
      const second = Math.floor(clock() / 1000);
      const documents = callerLinks ? finalDocuments.withLinks : finalDocuments.withoutLinks;
      let document = documents.get(record);
      if (document?.second !== second) {
        // The route's schema serializer returns a string for a JSON schema.
        const body = reply.serialize(await presentExport(record, callerLinks, null)) as string;
        document = { second, body };
        documents.set(record, document);
      }
      // A string with a JSON content type is sent as it is, not serialized again.
      return (reply as FastifyReply).type("application/json; charset=utf-8").send(document.body);
    },
  );

  api.post(
    "/v1/exports/:id/cancel",
    {
      config: { scope: "exports:write", errors: ["not_found", "not_cancellable"] },
      schema: {
        tags: TAGS,
        summary: "Cancel an export",
        description: "Stops a queued or running export and deletes its files. 409 once the export is final.",
        params: ExportIdParams,
        response: { 200: CancelResponse },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const result = isUuid(request.params.id)
        ? await store.cancelExport(caller.tenantId, request.params.id, clock())
        : null;
      if (!result) throw new AppError("not_found", "No export with this id.");
      if (!result.canceled) {
        throw new AppError(
          "not_cancellable",
          `The export is ${result.record.status} and can no longer be canceled.`,
          [
            {
              field: "status",
              code: result.record.status,
              message: `Current status: ${result.record.status}.`,
            },
          ],
        );
      }
      request.log.info({ export_id: result.record.id }, "export canceled");
      // Delete what is published now: a queued export (parts of an interrupted run) has no worker to
      // do it; for a running one, its worker also drops the part it was writing.
      // When the object store fails now, the cancel still stands: the retention sweeper deletes them.
      if (result.record.parts.length > 0) {
        await purgeExportFiles(store, deps.storage, result.record, clock()).catch((err: unknown) =>
          request.log.warn(
            { err, export_id: result.record.id },
            "deleting the files failed; the sweeper retries",
          ),
        );
      }
      return presentExport(result.record, null, null);
    },
  );

  api.get(
    "/v1/exports/:id/download",
    {
      config: { scope: "exports:download", errors: ["not_found", "export_not_ready", "export_expired"] },
      schema: {
        tags: TAGS,
        summary: "Download a part",
        description:
          "302 to a fresh signed link (valid 20 minutes by default). `part` is needed when the export has several parts. `redirect=false` answers the link as JSON instead.",
        params: ExportIdParams,
        querystring: DownloadQuery,
        response: DownloadResponses,
      },
    },
    async (request, reply) => {
      const record = await findExport(callerOf(request).tenantId, request.params.id);
      const refusal = downloadRefusal(record);
      if (refusal) throw refusal;
      const { part: index, redirect } = request.query;
      if (index === undefined && record.parts.length > 1) {
        throw invalidRequest([
          {
            field: "part",
            code: "required",
            message: `The export has ${record.parts.length} parts; choose one.`,
          },
        ]);
      }
      const part = record.parts[index ?? 0];
      if (!part) {
        throw invalidRequest([
          {
            field: "part",
            code: "out_of_range",
            message: `Parts are numbered 0 to ${record.parts.length - 1}.`,
          },
        ]);
      }
      const filename = partDownloadName(record.request, part.index);
      const link = await links.sign(part.objectKey, filename);
      reply.header("cache-control", "no-store");
      if (redirect === false) {
        return {
          part: part.index,
          filename,
          url: link.url,
          expires_at: new Date(link.expiresAt).toISOString(),
        };
      }
      return reply.redirect(link.url, 302);
    },
  );
}
