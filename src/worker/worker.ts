/**
 * The worker's runner: claims jobs with a lease, keeps each lease alive with a heartbeat, aborts a
 * run once its lease is lost, runs up to `concurrency` at once and hands them back on shutdown. What
 * a run does is the export job's (usecases/run-export-job.ts); the runner knows leases, not exports.
 * The heartbeat is also how a cancel arrives: once the export is no longer running under this
 * worker's lease, the run is aborted within one heartbeat.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import type { Logger } from "pino";
import type { Config } from "../config/index.js";
import type { ClaimedExport, JobQueuePort, Lease } from "../metadata/types.js";
import { StoreUnavailableError } from "../metadata/unavailable.js";
import type { Metrics } from "../metrics/metrics.js";
import type { ObjectStore } from "../object-store/types.js";
import type { DatasetRegistry } from "../sources/registry.js";
import { ExportJob, RunAborted, type RunLease } from "../usecases/run-export-job.js";
import { OutageLog } from "./outage.js";

/**
 * What the runner is built from: the JobQueuePort it claims and heartbeats through, and what the
 * export job it runs needs (object store, datasets, config).
 */
export interface WorkerDeps {
  store: JobQueuePort;
  storage: ObjectStore;
  datasets: DatasetRegistry;
  config: Pick<Config, "worker" | "gzipLevel" | "retentionDays">;
  logger: Logger;
  /** The runner counts takeovers and run outcomes; the export job counts parts and storage retries. */
  metrics: Pick<Metrics, "leaseTakenOver" | "runFinished" | "partPublished" | "storageRetried">;
  clock?: () => number;
}

function processExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return true; // not ours to judge: let the lease expire
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class ExportWorker {
  /** Identifies this worker in leases; the host and pid make a stuck lease easy to trace. */
  readonly owner = `${os.hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  private readonly runs = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private stopping = false;
  /** Set once the shutdown's grace is over: a run started from then on is handed back at once. */
  private handingBack = false;
  private loopDone: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private readonly clock: () => number;
  private readonly claiming: OutageLog;
  private readonly job: ExportJob;

  constructor(private readonly deps: WorkerDeps) {
    this.clock = deps.clock ?? Date.now;
    this.claiming = new OutageLog(deps.logger, "claiming");
    const { store, storage, datasets, config, metrics } = deps;
    this.job = new ExportJob({ queue: store, storage, datasets, config, metrics, clock: this.clock });
  }

  start(): void {
    this.loopDone ??= this.recoverLocalCrashes()
      .then(() => this.listenForWork())
      .then(() => this.loop());
  }

  /** Exports queued by other processes wake this worker at once where the store can tell it. */
  private async listenForWork(): Promise<void> {
    try {
      await this.deps.store.subscribeToQueue?.(
        () => this.wake(),
        (connected, err) => {
          if (connected) this.deps.logger.info("queue notifications restored");
          else this.deps.logger.warn({ err }, "queue notifications lost; polling until they return");
        },
      );
    } catch (err) {
      this.deps.logger.warn({ err }, "no queue notifications; polling only");
    }
  }

  /**
   * A worker on this host that died (kill -9, OOM) leaves its leases behind until they expire.
   * Its pid tells us at once: when that process no longer exists, end its leases now so the
   * restarted service resumes its exports without waiting. A pid reused by another process only
   * means we wait for the lease as usual; a wrong guess is harmless, since part keys carry the
   * run and a worker that lost its lease cannot publish. Either way the claim that follows is a
   * takeover: it counts against EXPORTD_MAX_TAKEOVERS, not against the export's attempts.
   */
  private async recoverLocalCrashes(): Promise<void> {
    try {
      const host = os.hostname();
      const dead = (await this.deps.store.leaseOwners()).filter((owner) => {
        const [ownerHost, pid] = owner.split(":");
        return ownerHost === host && Number(pid) !== process.pid && !processExists(Number(pid));
      });
      const released = await this.deps.store.expireLeases(dead, this.clock());
      if (released > 0)
        this.deps.logger.info({ released, owners: dead }, "resuming exports of a crashed worker");
    } catch (err) {
      this.deps.logger.warn({ err }, "could not check for crashed workers; their leases will expire");
    }
  }

  /** Ask for an immediate claim (a new export was queued in this process). */
  wake(): void {
    this.wakeUp?.();
  }

  get activeRuns(): number {
    return this.runs.size;
  }

  /**
   * Stops claiming and hands running exports back to the queue. Each run first gets `graceMs` to
   * finish the part it is writing — that part is published, so nothing done is lost — and is
   * aborted at the deadline otherwise (resuming then redoes only that part).
   */
  async stop(graceMs = 0): Promise<void> {
    this.stopping = true;
    this.wake();
    const abortAll = () => {
      this.handingBack = true;
      for (const run of this.runs.values()) run.controller.abort(new RunAborted("shutdown"));
    };
    const deadline = graceMs > 0 ? setTimeout(abortAll, graceMs) : null;
    if (!deadline) abortAll();
    // A claim already in flight when the stop began still starts its run: the loop ends first, so
    // that run is among those waited for (and handed back at once if the deadline has passed).
    await this.loopDone;
    await Promise.all([...this.runs.values()].map((r) => r.done));
    if (deadline) clearTimeout(deadline);
  }

  private lease(): Lease {
    return { owner: this.owner, now: this.clock(), leaseMs: this.deps.config.worker.leaseMs };
  }

  private async loop(): Promise<void> {
    const { concurrency, pollMs } = this.deps.config.worker;
    while (!this.stopping) {
      let claimed = false;
      try {
        while (!this.stopping && this.runs.size < concurrency) {
          const record = await this.deps.store.claimExport(this.lease());
          if (!record) break;
          claimed = true;
          this.startRun(record);
        }
        this.claiming.ok();
      } catch (err) {
        // While the store is down, claiming pauses: running exports keep their leases as long as
        // heartbeats get through, the rest lapse and are claimed again once it is back.
        if (!this.claiming.failed(err)) this.deps.logger.error({ err }, "claiming an export failed");
      }
      if (this.stopping) break;
      // Sleep until woken (new export, a slot freed) or the poll interval passes.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, claimed && this.runs.size < concurrency ? 0 : pollMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = null;
    }
  }

  private startRun(record: ClaimedExport): void {
    const controller = new AbortController();
    if (this.handingBack) controller.abort(new RunAborted("shutdown"));
    const started = this.clock();
    if (record.takenOver) this.deps.metrics.leaseTakenOver();
    const done = this.run(record, controller)
      .then((outcome) => this.deps.metrics.runFinished(outcome, (this.clock() - started) / 1000))
      .catch((err: unknown) => {
        if (err instanceof StoreUnavailableError) {
          this.deps.logger.warn(
            { err, export_id: record.id },
            "export run ended while the metadata store was unavailable; it resumes when its lease lapses",
          );
        } else this.deps.logger.error({ err, export_id: record.id }, "export run crashed");
      })
      .finally(() => {
        this.runs.delete(record.id);
        this.wake();
      });
    this.runs.set(record.id, { controller, done });
  }

  /**
   * One run under its lease: the heartbeat renews the lease every heartbeatMs and aborts the run
   * once it is lost — refused, or not renewed within leaseMs while the store is unavailable.
   */
  private async run(record: ClaimedExport, controller: AbortController) {
    const { store, config } = this.deps;
    const log = this.deps.logger.child({
      export_id: record.id,
      tenant_id: record.tenantId,
      attempt: record.attempts,
      run: record.runs,
    });
    const lease: RunLease = {
      signal: controller.signal,
      current: () => this.lease(),
      renewedAt: this.clock(),
      stopping: () => this.stopping,
    };
    const beats = new OutageLog(log, "heartbeat");
    const heartbeat = setInterval(() => {
      const sent = this.clock();
      store.heartbeat(record.id, this.lease()).then(
        (check) => {
          beats.ok();
          lease.renewedAt = Math.max(lease.renewedAt, sent);
          if (check === "lost") controller.abort(new RunAborted("lost"));
        },
        (err: unknown) => {
          if (!beats.failed(err)) log.warn({ err }, "heartbeat failed");
          if (this.clock() - lease.renewedAt > config.worker.leaseMs)
            controller.abort(new RunAborted("lost"));
        },
      );
    }, config.worker.heartbeatMs);
    try {
      return await this.job.run(record, lease, log);
    } finally {
      clearInterval(heartbeat);
    }
  }
}
