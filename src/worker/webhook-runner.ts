/**
 * The webhook deliverer of a worker process: claims due deliveries under a lease (any number of
 * processes may run one; PostgreSQL's SKIP LOCKED keeps them off each other's rows), sends up to
 * `concurrency` at once through the delivery use case, and sleeps until woken — by a status change
 * in this process, by NOTIFY from another (PostgreSQL), by the next retry it scheduled itself, or
 * by the poll interval. A process killed mid-delivery leaves its lease to lapse; then another
 * process sends the delivery again, with the same webhook-id.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import type { Logger } from "pino";
import type { Lease } from "../metadata/types.js";
import { type DeliveryDeps, deliverWebhook } from "../usecases/deliver-webhooks.js";
import { OutageLog } from "./outage.js";

export interface WebhookRunnerDeps {
  delivery: DeliveryDeps;
  concurrency: number;
  pollMs: number;
  /** Finished deliveries older than this are forgotten (checked hourly). */
  keepMs: number;
  logger: Logger;
}

/** How long a claimed delivery is ours: the POST's timeout and a margin to record it. */
const LEASE_MARGIN_MS = 5000;
const FORGET_EVERY_MS = 3_600_000;

export class WebhookRunner {
  readonly owner = `${os.hostname()}:${process.pid}:wh-${randomBytes(4).toString("hex")}`;
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;
  private loopDone: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private woken = false;
  private lastForget = 0;
  private readonly claiming: OutageLog;

  constructor(private readonly deps: WebhookRunnerDeps) {
    this.claiming = new OutageLog(deps.logger, "claiming webhook deliveries");
  }

  start(): void {
    this.loopDone ??= this.listen().then(() => this.loop());
  }

  private async listen(): Promise<void> {
    try {
      await this.deps.delivery.store.subscribeToWebhooks(
        () => this.wake(),
        (connected, err) => {
          if (connected) this.deps.logger.info("webhook notifications restored");
          else this.deps.logger.warn({ err }, "webhook notifications lost; polling until they return");
        },
      );
    } catch (err) {
      this.deps.logger.warn({ err }, "no webhook notifications; polling only");
    }
  }

  /** Claim now (a delivery became due). */
  wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  /** Stops claiming and waits for the deliveries in flight (each bounded by the POST's timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.loopDone;
    await Promise.all(this.inFlight);
  }

  private lease(): Lease {
    const d = this.deps.delivery;
    return { owner: this.owner, now: d.clock(), leaseMs: d.timeoutMs + LEASE_MARGIN_MS };
  }

  private async loop(): Promise<void> {
    const { concurrency, pollMs } = this.deps;
    while (!this.stopping) {
      this.woken = false;
      let full = false;
      try {
        const room = concurrency - this.inFlight.size;
        if (room > 0) {
          const lease = this.lease();
          const claimed = await this.deps.delivery.store.claimWebhookDeliveries(lease, room);
          for (const d of claimed) this.track(deliverWebhook(this.deps.delivery, d, lease));
          full = claimed.length === room;
        }
        await this.forgetOld();
        this.claiming.ok();
      } catch (err) {
        if (!this.claiming.failed(err)) this.deps.logger.error({ err }, "claiming webhook deliveries failed");
      }
      if (this.stopping) break;
      if (this.woken || (full && this.inFlight.size < concurrency)) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = null;
    }
  }

  private track(delivery: Promise<{ retryInMs: number | null }>): void {
    const done: Promise<void> = delivery
      .then(({ retryInMs }) => {
        // A retry due before the next poll is claimed on time (tests shrink the schedule).
        if (retryInMs !== null && retryInMs < this.deps.pollMs)
          setTimeout(() => this.wake(), retryInMs + 1).unref();
      })
      .catch((err: unknown) =>
        this.deps.logger.error({ err }, "webhook delivery crashed; its lease will lapse"),
      )
      .finally(() => {
        this.inFlight.delete(done);
        // Claim in batches: once half the slots are free (or all, with a small concurrency),
        // not after every delivery — a claim is a transaction, whatever its size.
        if (this.inFlight.size <= Math.floor(this.deps.concurrency / 2)) this.wake();
      });
    this.inFlight.add(done);
  }

  private async forgetOld(): Promise<void> {
    const now = this.deps.delivery.clock();
    if (now - this.lastForget < FORGET_EVERY_MS) return;
    this.lastForget = now;
    const forgotten = await this.deps.delivery.store.forgetWebhookDeliveries(now - this.deps.keepMs);
    if (forgotten > 0) this.deps.logger.info({ forgotten }, "forgot old webhook deliveries");
  }
}
