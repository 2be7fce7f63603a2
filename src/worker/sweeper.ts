/**
 * The retention sweeper: runs the retention use case (usecases/retention.ts) every interval, one
 * pass at a time, and says once when the metadata store is away and once when it is back.
 */
import type { Logger } from "pino";
import type { RetentionPort } from "../metadata/types.js";
import type { ObjectStore } from "../object-store/types.js";
import { sweepRetention } from "../usecases/retention.js";
import { OutageLog } from "./outage.js";

export interface SweeperDeps {
  store: RetentionPort;
  storage: ObjectStore;
  forgetAfterDays: number;
  intervalMs: number;
  logger: Logger;
  clock?: () => number;
}

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

  private sweep(): Promise<void> {
    const { store, storage, forgetAfterDays, logger } = this.deps;
    return sweepRetention({ retention: store, storage, forgetAfterDays, logger, clock: this.clock });
  }
}
