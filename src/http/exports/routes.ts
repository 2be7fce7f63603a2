/**
 * /v1/exports: create, list, status, cancel and download. Each route validates, calls its use case
 * (usecases/) and presents the result (presenter.ts); every query is scoped to the caller's tenant.
 */

import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import { AppError, invalidRequest, UNAVAILABLE_RETRY_AFTER_SECONDS } from "../../domain/errors.js";
import { downloadRefusal, type ExportRecord, hasArchive, isFinal, itemRequest } from "../../domain/export.js";
import { isUuid } from "../../domain/ids.js";
import { archiveDownloadName, archiveKey, partDownloadName } from "../../domain/naming.js";
import type { ExportsPort } from "../../metadata/types.js";
import { cancelExport } from "../../usecases/cancel-export.js";
import { createExport } from "../../usecases/create-export.js";
import { ExportReader } from "../../usecases/read-exports.js";
import { type AuthContext, callerOf } from "../auth.js";
import type { HttpDeps } from "../deps.js";
import { PartLinks } from "../part-links.js";
import { EventStreamHub, parseEventId } from "./event-streams.js";
import { presentDryRun, presentExport } from "./presenter.js";
import {
  CancelResponse,
  CreateExportBody,
  CreateExportHeaders,
  CreateExportResponses,
  DownloadQuery,
  DownloadResponses,
  EventsHeaders,
  EventsResponses,
  ExportIdParams,
  ExportListSchema,
  ListExportsQuery,
  StatusResponse,
} from "./schemas.js";

const TAGS = ["exports"];

/** A page cursor is the last export id of the page, opaque to the client. */
function encodeCursor(id: string): string {
  return Buffer.from(id).toString("base64url");
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, "base64url").toString();
  if (!isUuid(id))
    throw invalidRequest([{ field: "cursor", code: "invalid", message: "Not a cursor from this API." }]);
  return id;
}

/** What the export routes use: the ExportsPort, no other part of the store. */
export type ExportRouteDeps = Pick<
  HttpDeps,
  "storage" | "datasets" | "config" | "clock" | "onExportQueued" | "signer"
> & { exports: ExportsPort };

export function exportRoutes(app: FastifyInstance, deps: ExportRouteDeps): void {
  const { exports, storage, datasets, config, clock } = deps;
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const links = new PartLinks(
    storage,
    config.linkTtlSeconds,
    clock,
    deps.signer ? { signer: deps.signer, publicUrl: config.publicUrl } : null,
  );
  const reader = new ExportReader(exports, clock);
  /**
   * Serialized status documents by record object (the reader answers the same object while an
   * export is unchanged): one map for keys that may download (signed links included), one for the
   * others, so a link never reaches a key without `exports:download`. A final export's document
   * carries links signed now, so it is kept for its second only; a queued or running export's
   * document has no links and holds for as long as its record.
   */
  const documents = {
    withLinks: new WeakMap<ExportRecord, { second: number; body: string }>(),
    withoutLinks: new WeakMap<ExportRecord, { second: number; body: string }>(),
  };
  /** Signed links only for keys that may download; the others see the parts without them. */
  const linksFor = (caller: AuthContext): PartLinks | null =>
    caller.scopes.includes("exports:download") ? links : null;
  const streams = new EventStreamHub({
    exports,
    max: config.eventStreams.max,
    pollMs: config.eventStreams.pollMs,
    heartbeatMs: config.eventStreams.heartbeatMs,
    clock,
    log: app.log,
  });
  // Open streams would hold the server's close forever: end them first.
  app.addHook("preClose", (done) => {
    try {
      streams.closeAll();
    } finally {
      done();
    }
  });
  api.post(
    "/v1/exports",
    {
      config: {
        scope: "exports:write",
        errors: [
          "invalid_date_range",
          "plan_required",
          "idempotency_conflict",
          "too_many_exports",
          "source_error",
        ],
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
      const result = await createExport(
        { exports, datasets, onExportQueued: deps.onExportQueued },
        {
          creator: callerOf(request),
          body: request.body,
          idempotencyKey: request.headers["idempotency-key"],
          now: clock(),
          log: request.log,
        },
      );
      if (result.kind === "dry_run")
        return reply.code(200).send(presentDryRun(result.dataset, result.estimatedRows, result.whole));
      if (result.kind === "replayed") reply.header("idempotent-replayed", "true");
      const { record } = result;
      return reply
        .code(202)
        .header("location", `/v1/exports/${record.id}`)
        .send(await presentExport(record, null, await reader.queuePosition(record)));
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
      const rows = await reader.list(caller.tenantId, {
        status: request.query.status,
        dataset: request.query.dataset,
        before: request.query.cursor ? decodeCursor(request.query.cursor) : undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        data: await Promise.all(
          page.map(async (r) => presentExport(r, linksFor(caller), await reader.queuePosition(r))),
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
      const record = await reader.find(caller.tenantId, request.params.id);
      const callerLinks = linksFor(caller);
      reply.header("cache-control", "no-store");
      const final = isFinal(record.status);
      const second = final ? Math.floor(clock() / 1000) : 0;
      const cache = callerLinks ? documents.withLinks : documents.withoutLinks;
      let document = cache.get(record);
      if (document?.second !== second) {
        const presented = await presentExport(
          record,
          callerLinks,
          final ? null : await reader.queuePosition(record),
        );
        // The route's schema serializer returns a string for a JSON schema.
        document = { second, body: reply.serialize(presented) as string };
        cache.set(record, document);
      }
      // A string with a JSON content type is sent as it is, not serialized again.
      return (reply as FastifyReply).type("application/json; charset=utf-8").send(document.body);
    },
  );

  api.get(
    "/v1/exports/:id/events",
    {
      config: { scope: "exports:read", errors: ["not_found", "too_many_event_streams"] },
      schema: {
        tags: TAGS,
        summary: "Stream progress events",
        description:
          "Server-Sent Events: the export document whenever it changes, then the final one, then the stream ends. Read it with a streaming fetch (it needs the Authorization header). Streams are capped per server process (`EXPORTD_MAX_EVENT_STREAMS`, then 503 `too_many_event_streams`): poll `GET /v1/exports/{id}` meanwhile.\n\nA stream lasts only as long as its credential: a sign-in token's stream ends at the token's `exp`, and every stream's credential is checked again every 5 seconds (a revoked key, a revoked operator key acting for the tenant, a disabled or deleted tenant). Such a stream ends with one `event: error` whose data is the error envelope a new request would get (`unauthorized`, `tenant_disabled`, `unknown_tenant`), then the connection closes; reconnecting with the same credential gets that code as the HTTP answer.",
        params: ExportIdParams,
        headers: EventsHeaders,
        response: EventsResponses,
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      if (!streams.hasRoom()) {
        throw new AppError(
          "too_many_event_streams",
          "This server holds as many progress streams open as it allows; poll the export meanwhile.",
          [],
          { "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
        );
      }
      const found = await reader.find(caller.tenantId, request.params.id);
      // A final export may be the reader's cached object: never changed here.
      const record = "queuePosition" in found ? found : { ...found, queuePosition: null };
      const callerLinks = linksFor(caller);
      // Authorized now; the hub checks the credential again while the stream runs.
      const credential = app.credentialCheck(request);
      reply.hijack();
      const res = reply.raw;
      // The headers hooks set (X-Request-Id, RateLimit-*) go out with the stream's own.
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) res.setHeader(name, typeof value === "number" ? String(value) : value);
      }
      res.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        // Proxies such as nginx would otherwise hold events back in their buffers.
        "x-accel-buffering": "no",
        // The connection ends with the stream: it is not kept for another request, so closing the
        // server (which ends every stream) leaves no connection to wait for.
        connection: "close",
      });
      res.flushHeaders();
      await streams.open({
        res,
        record,
        lastEventId: parseEventId(request.headers["last-event-id"]),
        credential,
        requestId: String(request.id),
        present: async (r) => JSON.stringify(await presentExport(r, callerLinks, r.queuePosition)),
      });
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
      const record = await cancelExport(
        { exports, storage, clock },
        callerOf(request).tenantId,
        request.params.id,
        request.log,
      );
      return presentExport(record, null, null);
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
      const { part: index, redirect, archive } = request.query;
      reply.header("cache-control", "no-store");
      if (archive === "zip") {
        const record = await reader.find(callerOf(request).tenantId, request.params.id);
        const refusal = downloadRefusal(record);
        if (refusal) throw refusal;
        if (!hasArchive(record.request) || !links.archives) {
          throw new AppError(
            "not_found",
            'This export has no zip archive here: create it with "archive": "zip" (archives are served by the /files route).',
          );
        }
        const filename = archiveDownloadName(record.request);
        const link = await links.signArchive(archiveKey(record.tenantId, record.id), filename);
        if (redirect === false) {
          return { part: null, filename, url: link.url, expires_at: new Date(link.expiresAt).toISOString() };
        }
        return reply.redirect(link.url, 302);
      }
      const { record, part } = await reader.partToDownload(
        callerOf(request).tenantId,
        request.params.id,
        index,
      );
      const filename = partDownloadName(itemRequest(record.request, part.dataset ?? 0), part.index);
      const link = await links.sign(part.objectKey, filename);
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
