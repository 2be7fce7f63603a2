/**
 * What the HTTP layer needs from the rest of the service, passed in by the composition root. The
 * app hands each part only what it uses: auth and maintenance the TenancyPort, the export and file
 * routes the ExportsPort, the operator routes the OperatorPort, readiness the store's ping.
 */

import type { Redis } from "ioredis";
import type { Config } from "../config/index.js";
import type {
  ExportsPort,
  OperatorPort,
  StoreLifecycle,
  TenancyPort,
  WebhooksPort,
} from "../metadata/types.js";
import type { Metrics } from "../metrics/metrics.js";
import type { LinkSigner } from "../object-store/signing.js";
import type { ObjectStore } from "../object-store/types.js";
import type { DatasetRegistry } from "../sources/registry.js";
import type { WebhookRouteDeps } from "./webhooks/routes.js";

/** The ports of the metadata store the API uses (the operator API: OperatorPort). */
export type HttpStore = TenancyPort & ExportsPort & OperatorPort & Pick<StoreLifecycle, "ping">;

export interface HttpDeps {
  config: Config;
  /** The metadata store as the API uses it: never the worker's or the sweeper's side. */
  store: HttpStore;
  storage: ObjectStore;
  datasets: DatasetRegistry;
  /**
   * Signs and verifies /files links (parts with local storage, zip archives with any); null: no
   * /files route (tests of other routes).
   */
  signer: LinkSigner | null;
  /** Root of the local object store for /files; null when not local (then /files serves archives only). */
  filesRoot: string | null;
  metrics: Metrics;
  /** Shared store for rate-limit counters when several API processes run; null: in process. */
  redis: Redis | null;
  clock: () => number;
  /** Called after an export is queued, so an in-process worker starts at once. */
  onExportQueued: () => void;
  /**
   * The webhook routes' needs (endpoints in the store, the secret box, the URL policy); absent,
   * /v1/webhook_endpoints is not served.
   */
  webhooks?: Omit<WebhookRouteDeps, "store"> & { store: WebhooksPort };
}
