/**
 * HMAC-signed links to exportd's own /files route: every part with the local object store, and the
 * zip archives with any object store. The signature covers the key, the expiry and the download
 * name, so none can be changed; it is compared in constant time.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { SignedLink } from "./types.js";

export interface SignedParams {
  key: string;
  /** Unix seconds. */
  expires: number;
  filename: string;
}

export type Verification = "ok" | "invalid_signature" | "link_expired";

export class LinkSigner {
  constructor(private readonly secret: string) {}

  sign(p: SignedParams): string {
    return createHmac("sha256", this.secret)
      .update(`GET\n${p.key}\n${p.expires}\n${p.filename}`)
      .digest("base64url");
  }

  /** Checks the signature first, so an expired link that was also altered reads as altered. */
  verify(p: SignedParams, signature: string, nowMs: number): Verification {
    const expected = Buffer.from(this.sign(p));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "invalid_signature";
    if (p.expires * 1000 <= nowMs) return "link_expired";
    return "ok";
  }
}

/**
 * A link to `<publicUrl>/files/<key>` valid for `ttlSeconds` from the second of `now` (ms), served
 * under `filename`. `expiresAt` is in milliseconds.
 */
export function filesLink(
  signer: LinkSigner,
  publicUrl: string,
  key: string,
  filename: string,
  ttlSeconds: number,
  now: number,
): SignedLink {
  const expires = Math.floor(now / 1000) + ttlSeconds;
  const signature = signer.sign({ key, expires, filename });
  const query = new URLSearchParams({ expires: String(expires), filename, signature });
  return { url: `${publicUrl}/files/${key}?${query.toString()}`, expiresAt: expires * 1000 };
}
