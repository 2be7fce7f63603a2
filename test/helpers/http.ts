/** A real listening server around an in-process service, and raw HTTP requests that keep paths as sent. */
import http from "node:http";
import type { TestService } from "./service.js";

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

export async function listen(svc: TestService): Promise<string> {
  await svc.app!.listen({ port: 0, host: "127.0.0.1" });
  const address = svc.app!.server.address();
  if (!address || typeof address === "string") throw new Error("no address");
  return `http://127.0.0.1:${address.port}`;
}

/** Sends the path byte for byte (fetch would normalise `..` and percent-encoding). */
export function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string | Buffer,
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    // Content-Length always: Node sends a DELETE's body without one, which is no valid HTTP message.
    const length = body === undefined ? {} : { "content-length": String(Buffer.byteLength(body)) };
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: { connection: "close", ...length, ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text,
            json: <T>() => JSON.parse(text) as T,
          });
        });
      },
    );
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
