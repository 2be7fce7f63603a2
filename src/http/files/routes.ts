/**
 * GET /files/<key>?expires&filename&signature — downloads from the local object store, and every
 * export's zip archive whatever the object store (with S3 the archive streams from ranged GETs of
 * the parts; the parts themselves are presigned links to the bucket, so with S3 only archive keys
 * are served here). No Authorization: the HMAC signature (checked in constant time, before the disk
 * or the store is touched), the expiry and the link's tenant (neither disabled nor deleted) are the
 * authorization. Range, ETag and conditional
 * requests of parts come from @fastify/send; the body of a 200 or 206 is written by file-body.ts
 * (pooled buffers, not send's stream). At most
 * EXPORTD_MAX_DOWNLOADS downloads are served at once; past that, 503 too_many_downloads.
 */
import type { FileHandle } from "node:fs/promises";
import fs from "node:fs/promises";
import send from "@fastify/send";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import { AppError, serviceUnavailable } from "../../domain/errors.js";
import { downloadRefusal } from "../../domain/export.js";
import { isUuid } from "../../domain/ids.js";
import { archiveOfKey, exportOfKey, isSafeKey } from "../../domain/naming.js";
import type { ExportsPort } from "../../metadata/types.js";
import { contentDisposition } from "../../object-store/content-disposition.js";
import { contentTypeOf } from "../../object-store/content-type.js";
import type { LinkSigner } from "../../object-store/signing.js";
import type { HttpDeps } from "../deps.js";
import { type BodyPiece, ChunkPool, DownloadSlots, writeBody, writeFileRange } from "../file-body.js";
import type { TenantsById } from "../tenants-by-id.js";
import { type ArchiveReader, answerFor, archiveOf, archivePieces, checkArchiveFiles } from "./archive.js";
import { FileParams, FileQuery, FileResponses } from "./schemas.js";

/** The query parameters of a signed link; a link with any other is refused as altered. */
const LINK_PARAMS: ReadonlySet<string> = new Set(Object.keys(FileQuery.properties));

/** The bytes a 200 or 206 answer of send carries: all of Content-Length, from Content-Range's start. */
function bodyRange(
  status: number,
  headers: Record<string, string>,
): { start: number; length: number } | null {
  const length = Number(headers["Content-Length"]);
  if (!Number.isSafeInteger(length) || length < 0) return null;
  if (status === 200) return { start: 0, length };
  const start = status === 206 ? /^bytes (\d+)-/.exec(String(headers["Content-Range"]))?.[1] : undefined;
  return start === undefined ? null : { start: Number(start), length };
}

/**
 * What the file route uses: the ExportsPort (to tell a missing file's export), no other part of the
 * store; the object store for ranged reads of archive parts when it is not the local folder.
 */
export type FileRouteDeps = Pick<HttpDeps, "config" | "clock" | "storage" | "metrics"> & {
  exports: ExportsPort;
  /**
   * The tenant of a link's key, through the cache authentication reads too (a map lookup on the
   * download hot path; a disable stops links within its second): a disabled or deleted tenant's
   * links are refused.
   */
  tenants: TenantsById;
};

/**
 * Opens the first stream piece (an S3 ranged GET) before any header goes out, so a store that is
 * away or a part that is gone is answered with the error envelope (503, 410, 404), not a cut body.
 */
async function openFirstStream(pieces: BodyPiece[]): Promise<void> {
  for (const [index, piece] of pieces.entries()) {
    if (piece.kind !== "stream") continue;
    if (typeof piece.stream === "function") pieces[index] = { ...piece, stream: await piece.stream() };
    return;
  }
}

/**
 * Registers /files. `root`: the local object store's folder (parts and archives read from disk), or
 * null with another object store (S3): archives only, their parts read through `deps.storage`.
 */
export function fileRoutes(
  app: FastifyInstance,
  deps: FileRouteDeps,
  signer: LinkSigner,
  root: string | null,
): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  /**
   * The answer for a validly signed link whose file is missing: what the download route answers for
   * its export (410 once the retention sweep deleted it), or 404 when the export is gone too.
   */
  const missingFile = async (key: string): Promise<AppError> => {
    const owner = exportOfKey(key);
    const record =
      owner && isUuid(owner.exportId) ? await deps.exports.getExport(owner.tenantId, owner.exportId) : null;
    return (record && downloadRefusal(record)) ?? new AppError("not_found", "The file no longer exists.");
  };
  /**
   * A file that could not be read: gone only when the file system says so (ENOENT, ENAMETOOLONG);
   * anything else — the objects folder replaced by a file (ENOTDIR), no permission, an I/O error —
   * is the storage failing, answered 503 with Retry-After, never "the file no longer exists".
   */
  const missingOrUnavailable = async (key: string, code: unknown): Promise<AppError> => {
    // No errno at all: send's own refusals (a dotfile, a bad path), which name no file that exists.
    if (typeof code !== "string" || code === "ENOENT" || code === "ENAMETOOLONG") return missingFile(key);
    // S3's own word for an object that is not there (any other S3 failure is the store failing).
    if (code === "NoSuchKey" || code === "NotFound") return missingFile(key);
    return serviceUnavailable(
      "The file storage cannot be read right now. Retry after the Retry-After seconds.",
    );
  };
  /**
   * Refuses a validly signed link whose tenant may no longer download: disabled (403
   * `tenant_disabled`, naming no tenant) or deleted (404 `not_found`, as the file it named is gone:
   * a link tells no one that its tenant existed). Every link exportd signs names a key under its
   * export's prefix; a key that names no tenant is not found either.
   */
  const checkLinkTenant = async (key: string, now: number): Promise<void> => {
    const owner = exportOfKey(key);
    if (!owner || !isUuid(owner.tenantId)) throw new AppError("not_found", "The file no longer exists.");
    const tenant = await deps.tenants.get(owner.tenantId, now);
    if (!tenant) throw new AppError("not_found", "The file no longer exists.");
    if (tenant.disabledAt !== null) {
      throw new AppError(
        "tenant_disabled",
        "The account these files belong to is disabled: its download links are refused.",
      );
    }
  };
  const { maxInFlight, bufferBudgetBytes, stallTimeoutMs } = deps.config.downloads;
  const slots = new DownloadSlots(maxInFlight);
  deps.metrics.followDownloads(() => slots.inFlight);
  const pool = new ChunkPool(bufferBudgetBytes);
  api.get(
    "/files/*",
    {
      config: {
        errors: [
          "invalid_signature",
          "link_expired",
          "tenant_disabled",
          "not_found",
          "export_not_ready",
          "export_expired",
          "precondition_failed",
          "range_not_satisfiable",
          "service_unavailable",
          "too_many_downloads",
        ],
      },
      schema: {
        tags: ["files"],
        summary: "Download through a signed link",
        description:
          "Links come from the export status or the download route. Supports Range and If-None-Match.",
        params: FileParams,
        querystring: FileQuery,
        response: FileResponses,
      },
    },
    async (request, reply) => {
      const key = request.params["*"];
      const { expires, filename, signature } = request.query;
      // A link is used exactly as issued: `expires` as exportd writes it (no leading zeros), and
      // no parameter the link does not carry. Anything else is an altered link, answered as one.
      const expiresAt = expires && /^(?:0|[1-9]\d{0,11})$/.test(expires) ? Number(expires) : null;
      const asIssued = Object.keys(request.query).every((name) => LINK_PARAMS.has(name));
      if (
        !asIssued ||
        !isSafeKey(key) ||
        expiresAt === null ||
        filename === undefined ||
        signature === undefined
      ) {
        throw new AppError("invalid_signature", "This link is not a valid download link.");
      }
      const now = deps.clock();
      const verdict = signer.verify({ key, expires: expiresAt, filename }, signature, now);
      if (verdict === "invalid_signature")
        throw new AppError("invalid_signature", "The link's signature does not match.");
      if (verdict === "link_expired") {
        throw new AppError("link_expired", "The link has expired. Ask the API for a fresh one.");
      }
      // Only after the signature: without a link exportd issued, no one learns a tenant's state.
      await checkLinkTenant(key, now);

      // An export's zip archive: no stored object, assembled from its parts (archive.ts).
      const archiveOwner = archiveOfKey(key);
      if (archiveOwner) {
        const record = isUuid(archiveOwner.exportId)
          ? await deps.exports.getExport(archiveOwner.tenantId, archiveOwner.exportId)
          : null;
        if (!record) throw new AppError("not_found", "The export no longer exists.");
        const archive = archiveOf(record);
        const answer = answerFor(archive, request.headers as Record<string, string | undefined>);
        reply
          .header("etag", archive.etag)
          .header("last-modified", archive.lastModified.toUTCString())
          .header("cache-control", "private, no-cache");
        if (answer.status === 304) return reply.code(304).send();
        if (!slots.tryAcquire()) {
          throw new AppError(
            "too_many_downloads",
            `This server is sending ${slots.max} downloads already. Retry shortly.`,
            [],
            { "retry-after": "5" },
          );
        }
        let sending = false;
        // Aborts the ranged GETs of an S3 archive when the client leaves before its body is done.
        const abort = new AbortController();
        let pieces: BodyPiece[] = [];
        try {
          const reader: ArchiveReader =
            root !== null
              ? { kind: "files", root }
              : { kind: "ranges", storage: deps.storage, signal: abort.signal };
          pieces =
            request.method === "GET" ? archivePieces(archive, answer.start, answer.length, reader) : [];
          try {
            if (root !== null) await checkArchiveFiles(archive, root);
            else await openFirstStream(pieces);
          } catch (err) {
            const e = err as { code?: unknown; name?: unknown };
            // S3's errors name themselves (NoSuchKey); network failures carry an errno code.
            throw await missingOrUnavailable(key, root !== null ? e.code : (e.code ?? e.name));
          }
          reply
            .code(answer.status)
            .header("accept-ranges", "bytes")
            .header("content-type", contentTypeOf(filename))
            .header("content-disposition", contentDisposition(filename))
            .header("content-length", String(answer.length));
          if (answer.status === 206) {
            const last = answer.start + answer.length - 1;
            reply.header("content-range", `bytes ${answer.start}-${last}/${archive.layout.size}`);
          }
          // Written by hand (HEAD too: Fastify would answer an empty HEAD with Content-Length: 0).
          reply.hijack();
          for (const [name, value] of Object.entries(reply.getHeaders())) {
            if (value !== undefined) reply.raw.setHeader(name, value);
          }
          reply.raw.writeHead(reply.statusCode);
          if (request.method !== "GET") {
            reply.raw.end();
            return reply;
          }
          sending = true;
          reply.raw.once("close", () => abort.abort());
          writeBody(reply.raw, pieces, pool, stallTimeoutMs)
            .catch((err: unknown) => {
              request.log.error({ err }, "archive download cut short");
              reply.raw.destroy();
            })
            .finally(() => {
              slots.release();
              abort.abort();
            });
        } finally {
          if (!sending) {
            slots.release();
            abort.abort();
          }
        }
        return reply;
      }

      // With S3 the parts are links to the bucket: exportd serves no part here.
      if (root === null) throw new AppError("not_found", "No such file here.");

      // A slot per download from here until its body is written (or it turns out to have none).
      if (!slots.tryAcquire()) {
        throw new AppError(
          "too_many_downloads",
          `This server is sending ${slots.max} downloads already. Retry shortly.`,
          [],
          { "retry-after": "5" },
        );
      }
      let writing = false;
      try {
        const result = await send(request.raw, `/${key}`, {
          root,
          dotfiles: "deny",
          index: false,
          cacheControl: false,
          etag: true,
          lastModified: true,
          acceptRanges: true,
        });
        if (result.type === "error") {
          if (result.statusCode === 416) {
            throw new AppError("range_not_satisfiable", "The requested range lies outside the file.", [], {
              "content-range": result.headers["Content-Range"] ?? "",
            });
          }
          if (result.statusCode === 412)
            throw new AppError("precondition_failed", "The file is not the one expected.");
          throw await missingOrUnavailable(key, (result.metadata.error as { code?: unknown }).code);
        }
        if (result.type === "directory") throw await missingFile(key);
        const range = request.method === "GET" ? bodyRange(result.statusCode, result.headers) : null;
        // The body of a 200 or 206: our own reads (file-body.ts). The file is opened before any header
        // is set, so a file deleted since send's stat still gets the plain 404 envelope.
        let file: FileHandle | null = null;
        if (range !== null) {
          result.stream.destroy();
          try {
            file = await fs.open(result.metadata.path, "r");
          } catch (err) {
            throw await missingOrUnavailable(key, (err as { code?: unknown }).code);
          }
        }
        reply
          // send answers only the 200, 206 and 304 declared in the schema here (errors went above).
          .code(result.statusCode as keyof typeof FileResponses)
          .headers(result.headers)
          // The same type as the S3 store serves (send would guess from the extension alone).
          .header("content-type", contentTypeOf(key))
          .header("content-disposition", contentDisposition(filename))
          .header("cache-control", "private, no-cache");
        // 304s and HEAD: send's own empty stream, through Fastify.
        if (range === null || file === null) return reply.send(result.stream);

        // Fastify still runs the onResponse hooks (the request log line) of a hijacked reply.
        reply.hijack();
        for (const [name, value] of Object.entries(reply.getHeaders())) {
          if (value !== undefined) reply.raw.setHeader(name, value);
        }
        reply.raw.writeHead(reply.statusCode);
        writing = true;
        writeFileRange(reply.raw, file, range.start, range.length, pool, stallTimeoutMs)
          .catch((err: unknown) => {
            request.log.error({ err }, "download cut short");
            reply.raw.destroy();
          })
          .finally(() => {
            slots.release();
            file.close().catch(() => undefined);
          });
      } finally {
        if (!writing) slots.release();
      }
      return reply;
    },
  );
}
