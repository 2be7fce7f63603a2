/**
 * Retention: deletes the files of succeeded exports past their expiry (they become `expired`) and of
 * failed or canceled ones, then forgets exports entirely once their metadata is older than the
 * forget horizon (180 days by default), and drops idempotency keys older than 24 hours.
 */
import type { Logger } from "pino";
import { IDEMPOTENCY_KEY_TTL_MS } from "../domain/export.js";
import type { MetadataStore } from "../metadata/types.js";
import { purgeExportFiles } from "../purge.js";
import type { ObjectStore } from "../storage/types.js";
import { OutageLog } from "./outage.js";

export interface SweeperDeps {
  store: MetadataStore;
  storage: ObjectStore;
  forgetAfterDays: number;
  intervalMs: number;
  logger: Logger;
  clock?: () => number;
}

const BATCH = 100;

export class RetentionSweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly clock: () => number;
  private readonly outage: OutageLog;

  constructor(private readonly deps: SweeperDeps) {
    this.clock = deps.clock ?? Date.now;
    this.outage = new OutageLog(deps.logger, "retention sweep");
  }

  start(): void {
    this.timer = setInterval(() => void this.sweepOnce(), this.deps.intervalMs);
    this.timer.unref();
    void this.sweepOnce();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass; concurrent calls share the pass in progress. */
  sweepOnce(): Promise<void> {
    this.running ??= this.sweep()
      .then(
        () => this.outage.ok(),
        (err: unknown) => {
          if (!this.outage.failed(err)) this.deps.logger.error({ err }, "retention sweep failed");
        },
      )
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  private async sweep(): Promise<void> {
    const { store, storage } = this.deps;
    for (;;) {
      const now = this.clock();
      const due = await store.listExportsToPurge(now, BATCH);
      let failed = 0;
      for (const record of due) {
        try {
          await purgeExportFiles(store, storage, record, now);
        } catch (err) {
          // Left unpurged, so listed again by the next sweep: that is the retry.
          failed++;
          this.deps.logger.warn(
            { err, export_id: record.id },
            "deleting an export's files failed; next sweep retries",
          );
        }
      }
      if (due.length > failed) {
        this.deps.logger.info({ count: due.length - failed }, "export files deleted by retention");
      }
      // A page with failures would come back as it is: stop here rather than spin on it.
      if (due.length < BATCH || failed > 0) break;
    }
    const horizon = this.clock() - this.deps.forgetAfterDays * 86_400_000;
    let forgotten = 0;
    for (let n = BATCH; n === BATCH; forgotten += n) n = await store.forgetExports(horizon, BATCH);
    if (forgotten > 0) this.deps.logger.info({ count: forgotten }, "old exports forgotten");
    await store.forgetIdempotencyKeys(this.clock() - IDEMPOTENCY_KEY_TTL_MS);
  }
}
