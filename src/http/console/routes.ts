/**
 * GET /console: the page for people who export (its source is console/, built into dist/console/
 * by `npm run build`), and GET /console/* for its files, among them /console/exportd-export.js,
 * the embeddable <exportd-export> component. Public routes: the page signs in itself, with a key or
 * a token sent as Bearer to the API. Every answer carries a Content-Security-Policy that allows only
 * exportd's own origin.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../../domain/errors.js";
import { chooseEncoding, consoleFiles, defaultConsoleDir, encodedBody } from "./files.js";

/**
 * Only this origin, for everything: scripts, styles, API calls. No inline script or style, no
 * plugins, no <base>, and the page may be framed only by exportd itself (clickjacking).
 */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

/** The component's script is loaded by other origins' pages: cacheable briefly, readable by any. */
const COMPONENT = "exportd-export.js";

export function consoleRoutes(app: FastifyInstance, dir: string | null = defaultConsoleDir()): void {
  const serve = (request: FastifyRequest, reply: FastifyReply, name: string) => {
    const files = consoleFiles(dir);
    if (!files)
      throw new AppError("not_found", "The console is not built on this server: run `npm run build`.");
    const file = files.get(name);
    if (!file) throw new AppError("not_found", `No file /console/${name}.`);
    reply
      .header("content-security-policy", CONSOLE_CSP)
      .header("x-content-type-options", "nosniff")
      .header("referrer-policy", "no-referrer")
      .header("cache-control", name === COMPONENT ? "public, max-age=300" : file.cacheControl)
      .header("etag", file.etag)
      .header("vary", "Accept-Encoding");
    if (name === COMPONENT) {
      reply.header("access-control-allow-origin", "*").header("cross-origin-resource-policy", "cross-origin");
    }
    const ifNoneMatch = request.headers["if-none-match"];
    if (ifNoneMatch?.split(",").some((tag) => tag.trim().replace(/^W\//, "") === file.etag)) {
      return reply.code(304).send();
    }
    const encoding = file.compressible ? chooseEncoding(request.headers["accept-encoding"]) : "identity";
    if (encoding !== "identity") reply.header("content-encoding", encoding);
    return reply.type(file.type).send(encodedBody(file, encoding));
  };
  const schema = { hide: true };
  app.get("/console", { schema }, (request, reply) => serve(request, reply, "index.html"));
  app.get<{ Params: { "*": string } }>("/console/*", { schema }, (request, reply) =>
    serve(request, reply, request.params["*"] || "index.html"),
  );
}
