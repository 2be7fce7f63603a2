/**
 * The API driven in process (Fastify's inject) with one tenant's key: create an export and wait until
 * it settles, read it, GET any path with the key; and signed links fetched or forged without it.
 */
import assert from "node:assert/strict";
import type { Export } from "../../clients/typescript/src/index.js";
import { LocalObjectStore } from "../../src/object-store/local.js";
import { LinkSigner } from "../../src/object-store/signing.js";
import { signingSecret } from "../../src/service.js";
import { type TestService, waitFor } from "./service.js";

/** True once the export has left the queue and the worker (any final status). */
export function isSettled(e: { status: string }): boolean {
  return e.status !== "queued" && e.status !== "running";
}

/**
 * A client of `svc`'s API with `key`. `V` is the export document as the test reads it (by default the
 * typed client's `Export`, generated from /openapi.json).
 */
export function injectClient<V extends { id: string; status: string } = Export>(
  svc: TestService,
  key: string,
) {
  const headers = { authorization: `Bearer ${key}` };
  const inject = (url: string) => svc.app!.inject({ method: "GET", url, headers });
  const get = async (id: string) => (await inject(`/v1/exports/${id}`)).json() as V;
  const create = async (body: Record<string, unknown>): Promise<V> => {
    const res = await svc.app!.inject({ method: "POST", url: "/v1/exports", headers, payload: body });
    assert.equal(res.statusCode, 202, res.body);
    return res.json() as V;
  };
  const settled = (id: string, timeoutMs = 60_000) => waitFor(() => get(id), isSettled, timeoutMs);
  return {
    /** POST /v1/exports; it must answer 202. */
    create,
    get,
    /** The export once it has settled. */
    settled,
    /** `create`, then the export once it has settled. */
    run: async (body: Record<string, unknown>, timeoutMs?: number): Promise<V> =>
      settled((await create(body)).id, timeoutMs),
    /** GET any path with the key. */
    inject,
    /** GET /v1/exports/{id}/download (the first part unless `query` says otherwise). */
    download: (id: string, query = "") => inject(`/v1/exports/${id}/download${query}`),
  };
}

/** What `injectClient` returns, reading exports as the typed client's `Export`. */
export type InjectClient = ReturnType<typeof injectClient<Export>>;

/** GETs a signed link through the in-process /files route, without the API key (the link is the credential). */
export function fetchLink(svc: TestService, url: string, headers: Record<string, string> = {}) {
  const u = new URL(url);
  return svc.app!.inject({ method: "GET", url: u.pathname + u.search, headers });
}

/** A local link to any object key, signed with the service's own secret (as if the API had handed it out). */
export function signLocalLink(
  svc: TestService,
  key: string,
  filename: string,
  ttlSeconds: number,
  now: number,
) {
  const signer = new LinkSigner(signingSecret(svc.config));
  return new LocalObjectStore(svc.config.objectsDir, signer, svc.config.publicUrl).signedLink(
    key,
    filename,
    ttlSeconds,
    now,
  );
}
