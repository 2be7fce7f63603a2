/**
 * One log line when the metadata store becomes unavailable and one when it answers again, instead
 * of one per poll, heartbeat or sweep while it is down.
 */
import type { Logger } from "pino";
import { StoreUnavailableError } from "../metadata/unavailable.js";

export class OutageLog {
  private since: number | null = null;

  /** `activity` names what waits in the log lines ("claiming", "heartbeat", "retention sweep"). */
  constructor(
    private readonly logger: Logger,
    private readonly activity: string,
  ) {}

  /**
   * Records a failure. True when it was the store being unavailable (logged once per outage);
   * false for any other error, which the caller reports itself.
   */
  failed(err: unknown): boolean {
    if (!(err instanceof StoreUnavailableError)) return false;
    if (this.since === null) {
      this.since = Date.now();
      this.logger.warn({ err }, `metadata store unavailable; ${this.activity} waits for it`);
    }
    return true;
  }

  /** Records a success; logs the end of an outage, with its length. */
  ok(): void {
    if (this.since === null) return;
    this.logger.info(
      { outage_ms: Date.now() - this.since },
      `metadata store reachable again; ${this.activity} resumes`,
    );
    this.since = null;
  }
}
