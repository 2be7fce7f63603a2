/**
 * Signed download links for parts, as every route hands them out. A link is a pure function of the
 * object, the download name and the second it is signed in (expiry = that second + TTL), so the
 * last link of each part is kept and handed out again within the same second: clients polling a
 * finished export in a tight loop cost one signature per part per second, not one per request.
 */
import { filesLink, type LinkSigner } from "../object-store/signing.js";
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
     * Signs links to exportd's own /files route, where zip archives are assembled whatever the
     * object store (an S3 link would point at the bucket, which holds no archive object); with
     * exportd's public URL. Null: no archive links (no /files route in this process).
     */
    private readonly files: { signer: LinkSigner; publicUrl: string } | null = null,
  ) {}

  /** Whether zip archives can be linked (exportd serves /files). */
  get archives(): boolean {
    return this.files !== null;
  }

  /** A link to a part, from the object store (a /files link locally, a presigned GET on S3). */
  sign(objectKey: string, filename: string): Promise<SignedLink> {
    return this.memo(objectKey, filename, (now) =>
      this.storage.signedLink(objectKey, filename, this.ttlSeconds, now),
    );
  }

  /** A link to an export's zip archive (`archiveKey`), always through exportd's /files route. */
  signArchive(archiveKey: string, filename: string): Promise<SignedLink> {
    const files = this.files;
    if (!files) return Promise.reject(new Error("archive links need exportd's /files route"));
    return this.memo(archiveKey, filename, async (now) =>
      filesLink(files.signer, files.publicUrl, archiveKey, filename, this.ttlSeconds, now),
    );
  }

  private memo(
    objectKey: string,
    filename: string,
    make: (now: number) => Promise<SignedLink>,
  ): Promise<SignedLink> {
    const second = Math.floor(this.clock() / 1000);
    const memoKey = `${objectKey}\n${filename}`;
    const hit = this.recent.get(memoKey);
    if (hit && hit.second === second) return hit.link;
    const link = make(second * 1000);
    if (this.recent.size >= MAX_REMEMBERED) this.recent.clear();
    this.recent.set(memoKey, { second, link });
    // A failed signature is not remembered: the next request tries again.
    link.catch(() => this.recent.delete(memoKey));
    return link;
  }
}
