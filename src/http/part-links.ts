/**
 * Signed download links for parts, as every route hands them out. A link is a pure function of the
 * object, the download name and the second it is signed in (expiry = that second + TTL), so the
 * last link of each part is kept and handed out again within the same second: clients polling a
 * finished export in a tight loop cost one signature per part per second, not one per request.
 */
import type { ObjectStore, SignedLink } from "../object-store/types.js";

/** Bound on remembered links; past it the memo starts over (it only saves work). */
const MAX_REMEMBERED = 10_000;

export class PartLinks {
  private readonly recent = new Map<string, { second: number; link: Promise<SignedLink> }>();

  constructor(
    private readonly storage: ObjectStore,
    private readonly ttlSeconds: number,
    private readonly clock: () => number,
    /**
     * Whether zip archives can be linked: they are assembled by exportd's own /files route, so only
     * with the local object store (an S3 link points at the bucket, which holds no archive object).
     */
    readonly archives = false,
  ) {}

  sign(objectKey: string, filename: string): Promise<SignedLink> {
    const second = Math.floor(this.clock() / 1000);
    const memoKey = `${objectKey}\n${filename}`;
    const hit = this.recent.get(memoKey);
    if (hit && hit.second === second) return hit.link;
    const link = this.storage.signedLink(objectKey, filename, this.ttlSeconds, second * 1000);
    if (this.recent.size >= MAX_REMEMBERED) this.recent.clear();
    this.recent.set(memoKey, { second, link });
    // A failed signature is not remembered: the next request tries again.
    link.catch(() => this.recent.delete(memoKey));
    return link;
  }
}
