/**
 * The console's built files (dist/console/, made by `npm run build` from console/), read once per
 * process into memory — the whole page is some tens of KB — with their ETag, cache policy and
 * gzip/brotli variants compressed on first request. No path from a request reaches the disk: a
 * request names an entry of this map or nothing.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

/** Content types of the files a Vite build writes; other files (sizes.json) are not served. */
const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
};
/** Types worth compressing. */
const COMPRESSIBLE = new Set([".html", ".js", ".css", ".svg"]);

export type Encoding = "br" | "gzip" | "identity";

export interface ConsoleFile {
  type: string;
  etag: string;
  /** Cache-Control: hashed assets for a year, immutable; the rest revalidated on every use. */
  cacheControl: string;
  body: Buffer;
  compressible: boolean;
  /** Filled on first request per encoding. */
  encoded: Map<Encoding, Buffer>;
}

/** The body in `encoding`, compressed once per process. */
export function encodedBody(file: ConsoleFile, encoding: Encoding): Buffer {
  if (encoding === "identity" || !file.compressible) return file.body;
  let body = file.encoded.get(encoding);
  if (!body) {
    body =
      encoding === "br"
        ? zlib.brotliCompressSync(file.body, {
            params: {
              [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
              [zlib.constants.BROTLI_PARAM_SIZE_HINT]: file.body.length,
            },
          })
        : zlib.gzipSync(file.body, { level: 9 });
    file.encoded.set(encoding, body);
  }
  return body;
}

/**
 * The best encoding the client accepts (RFC 9110 §12.5.3): brotli, then gzip, else identity. A
 * coding with q=0 is refused; `*` stands for codings not named.
 */
export function chooseEncoding(acceptEncoding: string | undefined): Encoding {
  if (!acceptEncoding) return "identity";
  const q = new Map<string, number>();
  for (const item of acceptEncoding.split(",")) {
    const [name = "", ...params] = item.trim().toLowerCase().split(";");
    const weight = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    const value = weight ? Number(weight.slice(2)) : 1;
    q.set(name.trim(), Number.isFinite(value) ? value : 0);
  }
  const accepts = (coding: string) => (q.get(coding) ?? q.get("*") ?? 0) > 0;
  if (accepts("br")) return "br";
  if (accepts("gzip")) return "gzip";
  return "identity";
}

/** Vite names its output `name-<8 hash characters>.ext` under assets/: safe to cache for good. */
const HASHED = /^assets\/.+-[A-Za-z0-9_-]{8}\.[a-z0-9]+$/;

function loadFiles(dir: string): Map<string, ConsoleFile> {
  const files = new Map<string, ConsoleFile>();
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    const name = path.relative(dir, full).split(path.sep).join("/");
    const ext = path.extname(name);
    const type = TYPES[ext];
    if (!type) continue;
    const body = fs.readFileSync(full);
    files.set(name, {
      type,
      etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
      cacheControl: HASHED.test(name) ? "public, max-age=31536000, immutable" : "no-cache",
      body,
      compressible: COMPRESSIBLE.has(ext),
      encoded: new Map(),
    });
  }
  return files;
}

/**
 * Where the build put the console: dist/console/ beside the compiled server (dist/http/console/ →
 * dist/console/), or, when the server runs from src/ (tests, tsx), the repository's dist/console/.
 */
export function defaultConsoleDir(): string | null {
  const candidates = [
    new URL("../../console/", import.meta.url),
    new URL("../../../dist/console/", import.meta.url),
  ];
  for (const candidate of candidates) {
    const dir = fileURLToPath(candidate);
    if (fs.existsSync(path.join(dir, "index.html"))) return dir;
  }
  return null;
}

const loaded = new Map<string, Map<string, ConsoleFile>>();

/** The files of a console folder, read once per process; null when it is not built. */
export function consoleFiles(dir: string | null): Map<string, ConsoleFile> | null {
  if (dir === null) return null;
  let files = loaded.get(dir);
  if (!files) {
    if (!fs.existsSync(path.join(dir, "index.html"))) return null;
    files = loadFiles(dir);
    loaded.set(dir, files);
  }
  return files;
}
