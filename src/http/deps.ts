/** What the HTTP layer needs from the rest of the service, passed in by the composition root. */

import type { Redis } from "ioredis";
import type { Config } from "../config/index.js";
import type { MetadataStore } from "../metadata/types.js";
import type { Metrics } from "../metrics/metrics.js";
import type { DatasetRegistry } from "../sources/registry.js";
import type { LinkSigner } from "../storage/signing.js";
import type { ObjectStore } from "../storage/types.js";

export interface HttpDeps {
  config: Config;
  store: MetadataStore;
  storage: ObjectStore;
  datasets: DatasetRegistry;
  /** Verifies /files links; null when the object store serves its own links (S3). */
  signer: LinkSigner | null;
  /** Root of the local object store for /files; null when not local. */
  filesRoot: string | null;
  metrics: Metrics;
  /** Shared store for rate-limit counters when several API processes run; null: in process. */
  redis: Redis | null;
  clock: () => number;
  /** Called after an export is queued, so an in-process worker starts at once. */
  onExportQueued: () => void;
}
