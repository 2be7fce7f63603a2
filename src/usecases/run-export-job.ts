/**
 * Running one claimed export (the job the worker's runner hands over, under its lease): resume
 * clean-up, the pipeline, checkpoints and progress, object-store retry passes, and how the run ends.
 *
 * A claimed export resumes after its last published part. A run ends in exactly one of:
 * succeeded; failed (user error, retries used up, or its worker crashed too often); back in the
 * queue with back-off (retryable error, or shutdown); abandoned (canceled or taken over — the new
 * owner or the cancel owns it now). A failing object store does not end a run: it waits with
 * back-off and goes on from the last published part, until EXPORTD_STORAGE_RETRY_SECONDS is spent;
 * neither does a source that is down or stalls (EXPORTD_SOURCE_STALL_SECONDS without data): the same
 * retry passes, the same budget, then `source_unavailable`.
 * Every status change it decides is checked with the transition table (`assertTransition`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Config } from "../config/index.js";
import { ERROR_CATALOGUE, type ErrorCode } from "../domain/errors.js";
import {
  advanceProgress,
  assertTransition,
  datasetItems,
  type ExportError,
  type ExportPart,
  type ExportProgress,
  type ExportRecord,
  type ExportStatus,
  isCanceled,
  itemRequest,
  RunOutcome,
  resumePoint,
  retryDelayMs,
  STATUS,
} from "../domain/export.js";
import { exportPrefix } from "../domain/naming.js";
import type { JobQueuePort, Lease, LeaseCheck } from "../metadata/types.js";
import { StoreUnavailableError } from "../metadata/unavailable.js";
import type { Metrics } from "../metrics/metrics.js";
import { StorageError, storageOp } from "../object-store/errors.js";
import { Backoff, isPermanentStorageError, STORAGE_BACKOFF } from "../object-store/retry.js";
import type { ObjectStore } from "../object-store/types.js";
import { ExportFailure, type PipelineProgress, runExport } from "../pipeline/run-export.js";
import type { DatasetRegistry } from "../sources/registry.js";
import type { Dataset, TenantRef } from "../sources/types.js";
import { purgeExportFiles } from "./purge-export.js";
import { estimateWithin, isSourceUnavailable } from "./source-unavailable.js";

/** Why a run was aborted from outside the pipeline: its lease is lost, or its worker shuts down. */
export class RunAborted extends Error {
  constructor(readonly reason: "lost" | "shutdown") {
    super(
      reason === "lost"
        ? "the export is no longer running under this worker's lease"
        : "worker shutting down",
    );
  }
}

/**
 * The lease a run holds, as the runner keeps it: the runner's heartbeat renews it and aborts
 * `signal` (with RunAborted) once it is lost or the worker shuts down.
 */
export interface RunLease {
  readonly signal: AbortSignal;
  /** The lease to write under, as of now. */
  current(): Lease;
  /**
   * When the lease was last renewed (epoch ms; the heartbeat and each checkpoint write move it):
   * past leaseMs without a renewal another worker may own the export, so the run stops (an outage
   * of the store longer than the lease costs the part in progress; the takeover that follows is no
   * failed attempt).
   */
  renewedAt: number;
  /** Whether the worker is shutting down: the run hands its export back after the part it published. */
  stopping(): boolean;
}

export interface ExportJobDeps {
  queue: JobQueuePort;
  storage: ObjectStore;
  datasets: DatasetRegistry;
  config: Pick<Config, "worker" | "gzipLevel" | "retentionDays">;
  metrics: Pick<Metrics, "partPublished" | "storageRetried">;
  clock: () => number;
}

const PROGRESS_EVERY_MS = 500;
/** How often a checkpoint write is tried again while the metadata store is unavailable. */
const STORE_RETRY_MS = 500;

/**
 * A run's progress and row estimate, and what the store holds of them. Progress writes are advisory
 * and throttled (one per PROGRESS_EVERY_MS); each published part carries the progress after it.
 */
class ProgressReport {
  private lastWriteAt = 0;
  /** The latest row estimate, and the one the store holds. */
  private storedEstimate: number | null;

  constructor(
    private readonly queue: JobQueuePort,
    private readonly id: string,
    private readonly lease: RunLease,
    private readonly clock: () => number,
    public progress: ExportProgress,
    public estimatedRows: number | null,
  ) {
    this.storedEstimate = estimatedRows;
  }

  /**
   * The pipeline's position as the export's progress (which never moves backwards). `p` is the
   * pipeline's own (rows of its dataset): with several datasets, the share is the datasets done plus
   * the position in the running one, over how many there are, and rows count every dataset's.
   */
  at(p: PipelineProgress, where: DatasetPosition = SINGLE): ExportProgress {
    const share = (where.dataset + p.position) / where.count;
    return advanceProgress(this.progress, {
      percent: Math.floor(share * 10_000) / 100,
      rows: where.rowsBefore + p.rows,
      parts: p.parts,
      dataset: where.dataset,
    });
  }

  /** A published part stored this progress. */
  published(progress: ExportProgress): void {
    this.progress = progress;
  }

  /** Writes progress at most every PROGRESS_EVERY_MS; RunAborted("lost") when the lease is gone. */
  async report(p: PipelineProgress, where: DatasetPosition = SINGLE): Promise<void> {
    const now = this.clock();
    if (now - this.lastWriteAt < PROGRESS_EVERY_MS) return;
    this.lastWriteAt = now;
    this.progress = this.at(p, where);
    let check: LeaseCheck;
    try {
      check = await this.queue.updateProgress(
        this.id,
        this.lease.current(),
        this.progress,
        this.estimatedRows,
      );
    } catch (err) {
      // Progress is advisory: the next write carries it, the heartbeat watches the lease.
      if (err instanceof StoreUnavailableError) return;
      throw err;
    }
    if (check === "lost") throw new RunAborted("lost");
    this.storedEstimate = this.estimatedRows;
  }

  /** An export that finished before its count: record the estimate with the final progress. */
  async flushEstimate(): Promise<void> {
    if (this.estimatedRows === this.storedEstimate) return;
    const check = await this.queue.updateProgress(
      this.id,
      this.lease.current(),
      this.progress,
      this.estimatedRows,
    );
    if (check === "lost") throw new RunAborted("lost");
  }
}

/** Which of an export's datasets the pipeline is running, and the rows of the datasets before it. */
interface DatasetPosition {
  dataset: number;
  count: number;
  rowsBefore: number;
}

const SINGLE: DatasetPosition = { dataset: 0, count: 1, rowsBefore: 0 };

/**
 * One run of an export, carried across its passes: a pass that the object store breaks off is
 * followed by another from the checkpoint (the last published part, its cursor and progress).
 */
interface RunState {
  record: ExportRecord;
  /** The export's datasets, in the order they run (one for a single-dataset export). */
  datasets: Dataset[];
  tenant: TenantRef;
  lease: RunLease;
  log: Logger;
  parts: ExportPart[];
  cursor: string | null;
  report: ProgressReport;
  /** Waits between passes; reset by each published part. */
  backoff: Backoff;
}

/** The export job: runs one claimed export to the end of its run. */
export class ExportJob {
  constructor(private readonly deps: ExportJobDeps) {}

  /**
   * Runs `record` (claimed, running under `lease`) and says how the run ended. Throws only what it
   * cannot hand back: StoreUnavailableError while ending the run (the lease then lapses and the
   * export is resumed), or a bug.
   */
  async run(record: ExportRecord, lease: RunLease, log: Logger): Promise<RunOutcome> {
    const { queue, datasets, config, clock } = this.deps;
    const { signal } = lease;
    try {
      if (record.takeovers > config.worker.maxTakeovers) {
        await this.fail(record, lease, crashedError(record.takeovers), log);
        return RunOutcome.failed;
      }
      if (record.attempts > config.worker.maxAttempts) {
        await this.fail(record, lease, record.error ?? systemError("internal_error"), log);
        return RunOutcome.failed;
      }
      const items = datasetItems(record.request);
      const runDatasets = items.map((item) => {
        const found = datasets.get(item.dataset);
        if (!found) throw new Error(`dataset ${item.dataset} is not configured on this worker`);
        return found;
      });
      const tenant = await queue.getTenant(record.tenantId);
      if (!tenant) throw new Error(`tenant ${record.tenantId} of export ${record.id} does not exist`);
      log.info({ resume_part: record.parts.length, takeovers: record.takeovers }, "export started");

      const report = new ProgressReport(
        queue,
        record.id,
        lease,
        clock,
        record.progress,
        record.estimatedRows,
      );
      const state: RunState = {
        record,
        datasets: runDatasets,
        tenant: { id: tenant.id, name: tenant.name },
        lease,
        log,
        parts: [...record.parts],
        cursor: record.cursor,
        report,
        backoff: new Backoff({ budgetMs: config.worker.storageRetryMs, ...STORAGE_BACKOFF }, clock),
      };
      // Estimated once, beside the first run rather than in front of it (an exact count of a large
      // range takes a while); the next progress write carries it. A resumed run keeps the estimate.
      // Bounded, so that a source that stopped answering cannot hold the end of a finished run.
      // Several datasets: the sum of their estimates, unknown when one is.
      const estimating =
        report.estimatedRows === null
          ? Promise.all(
              runDatasets.map((d, i) => estimateWithin(d, tenant, itemRequest(record.request, i), clock())),
            ).then(
              (counts) => {
                report.estimatedRows = counts.some((c) => c === null)
                  ? null
                  : counts.reduce((sum: number, c) => sum + (c as number), 0);
              },
              (err: unknown) => log.warn({ err }, "row estimate failed; progress goes on without it"),
            )
          : null;

      await this.runPasses(state);

      signal.throwIfAborted();
      await estimating;
      await report.flushEstimate();
      assertTransition(record.status, STATUS.succeeded);
      const expiresAt = clock() + config.retentionDays * 86_400_000;
      const completed = await this.leaseWrite(lease, () =>
        queue.completeExport(record.id, lease.current(), expiresAt),
      );
      if (completed === "lost") throw new RunAborted("lost");
      log.info("export succeeded");
      return RunOutcome.succeeded;
    } catch (caught) {
      const err = signal.aborted && !(caught instanceof ExportFailure) ? signal.reason : caught;
      return await this.handleFailure(record, lease, err, log);
    }
  }

  /**
   * Passes of the pipeline until one finishes. A part stream cannot be replayed mid-stream: when a
   * dependency is away — the object store failing, the source down or stalled — wait and run again
   * from the last published part, within this attempt, until the budget is spent. The heartbeat goes
   * on meanwhile, so nobody takes the export over.
   */
  private async runPasses(state: RunState): Promise<void> {
    const { signal } = state.lease;
    for (;;) {
      try {
        await this.runPass(state);
        return;
      } catch (err) {
        const away = signal.aborted ? null : dependencyAway(err);
        if (away === null) throw err;
        const delay = state.backoff.next();
        if (delay === null) throw err;
        if (away === "object store") this.deps.metrics.storageRetried();
        state.log.warn(
          { err, retry_in_ms: Math.round(delay), failures: state.backoff.failures },
          `${away} failed; resuming from the last published part after a pause`,
        );
        await sleep(delay, undefined, { signal });
      }
    }
  }

  /**
   * One pass of the pipeline from the run's checkpoint (its last published part), which it moves
   * forward with each part it publishes. First drops what an earlier run (or pass) left unpublished.
   */
  private async runPass(state: RunState): Promise<void> {
    const { queue, storage, config, clock } = this.deps;
    const { record, lease, log, report } = state;
    const prefix = exportPrefix(record.tenantId, record.id);
    const published = new Set(state.parts.map((p) => p.objectKey));
    await storageOp(async () => {
      await storage.dropIncompleteUploads(prefix);
      for (const key of await storage.list(prefix)) if (!published.has(key)) await storage.delete(key);
    });

    // Datasets run in order; a run starts in the dataset and after the part it was in.
    const items = datasetItems(record.request);
    const multi = items.length > 1;
    const totalLimits = record.request.totalLimits;
    const start = resumePoint(state.parts, state.cursor);
    for (let i = start.dataset; i < items.length; i++) {
      const dataset = state.datasets[i] as Dataset;
      const mine = state.parts.filter((p) => (p.dataset ?? 0) === i);
      const before = state.parts.filter((p) => (p.dataset ?? 0) < i);
      const sum = (parts: ExportPart[], field: "rows" | "bytes") =>
        parts.reduce((total, p) => total + p[field], 0);
      const where: DatasetPosition = { dataset: i, count: items.length, rowsBefore: sum(before, "rows") };
      await runExport({
        dataset,
        storage,
        tenant: state.tenant,
        exportId: record.id,
        run: record.runs,
        request: itemRequest(record.request, i),
        gzipLevel: config.gzipLevel,
        startPart: state.parts.length,
        startRows: sum(mine, "rows"),
        startBytes: sum(mine, "bytes"),
        multi: multi
          ? {
              dataset: i,
              maxRows: totalLimits?.maxRows ?? Number.MAX_SAFE_INTEGER,
              maxBytes: totalLimits?.maxBytes ?? Number.MAX_SAFE_INTEGER,
              startRows: sum(state.parts, "rows"),
              startBytes: sum(state.parts, "bytes"),
              resumed: mine.length > 0,
            }
          : undefined,
        after: i === start.dataset ? start.cursor : null,
        signal: lease.signal,
        sourceStallMs: config.worker.sourceStallMs,
        now: clock(),
        onPart: async (part, cursor, p) => {
          const progress = report.at(p, where);
          const check = await this.leaseWrite(lease, () =>
            queue.recordPart(record.id, lease.current(), part, cursor, progress),
          );
          if (check === "lost") {
            // Nobody else writes this key (it carries our run), so deleting it is safe. Should the
            // store fail now, the new owner's resume or the purge deletes it (no part row names it).
            await storage.delete(part.objectKey).catch((err: unknown) => log.warn({ err }, "late part left"));
            throw new RunAborted("lost");
          }
          state.parts.push(part);
          state.cursor = cursor;
          report.published(progress);
          state.backoff.reset();
          this.deps.metrics.partPublished(part.rows, part.bytes);
          log.debug({ part: part.index, dataset: i, rows: part.rows, bytes: part.bytes }, "part published");
          // Shutting down: this part is safe, so hand the export back now rather than start another.
          if (lease.stopping()) throw new RunAborted("shutdown");
        },
        onProgress: (p) => report.report(p, where),
      });
    }
  }

  /**
   * A checkpoint write (part, completion) that waits out a short outage of the metadata store while
   * the lease may still hold; "lost" once it cannot.
   */
  private async leaseWrite(lease: RunLease, write: () => Promise<LeaseCheck>): Promise<LeaseCheck> {
    const { clock, config } = this.deps;
    // Heartbeats may still get through while this write cannot (a locked table): give up after a
    // lease's length of failures of its own too, so a run does not wait as long as the lock.
    const firstTry = clock();
    for (;;) {
      try {
        const check = await write();
        if (check === "ok") lease.renewedAt = clock();
        return check;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        const now = clock();
        const limit = config.worker.leaseMs;
        if (now - lease.renewedAt > limit || now - firstTry > limit) throw new RunAborted("lost");
      }
      await sleep(STORE_RETRY_MS, undefined, { signal: lease.signal });
    }
  }

  /**
   * How a run that did not succeed ends: a shutdown requeues it; a lost lease abandons it (purging
   * its files when a cancel took it); the export's own failure fails it at once; anything else goes
   * back to the queue with back-off until the attempts run out, then fails.
   */
  private async handleFailure(
    record: ExportRecord,
    lease: RunLease,
    err: unknown,
    log: Logger,
  ): Promise<RunOutcome> {
    const { queue, config, clock } = this.deps;
    if (err instanceof RunAborted && err.reason === "shutdown") {
      assertTransition(record.status, STATUS.queued);
      await queue.requeueExport(record.id, lease.current(), clock(), null);
      log.info("export handed back to the queue (shutdown)");
      return RunOutcome.requeued;
    }
    if (err instanceof RunAborted) {
      // Canceled, or another worker took the lease over. Only a cancel means the files must go.
      const current = await queue.getExport(record.tenantId, record.id);
      if (current && isCanceled(current.status)) {
        await this.purge(current, current.status, log);
        log.info("export canceled");
        return RunOutcome.canceled;
      }
      log.warn("lease lost; another worker continues this export");
      return RunOutcome.lost;
    }
    if (err instanceof ExportFailure) {
      await this.fail(record, lease, { code: err.code, message: err.message, retryable: false }, log);
      return RunOutcome.failed;
    }
    const error = systemError(
      err instanceof StorageError
        ? "storage_error"
        : isSourceUnavailable(err)
          ? "source_unavailable"
          : "internal_error",
    );
    log.error({ err }, "export attempt failed");
    if (record.attempts < config.worker.maxAttempts) {
      assertTransition(record.status, STATUS.queued);
      const runAfter = clock() + retryDelayMs(record.attempts, config.worker.retryBaseMs);
      await queue.requeueExport(record.id, lease.current(), runAfter, error);
      return RunOutcome.requeued;
    }
    await this.fail(record, lease, error, log);
    return RunOutcome.failed;
  }

  /** Fails the export under the lease and deletes its files (only when the fail was ours to write). */
  private async fail(record: ExportRecord, lease: RunLease, error: ExportError, log: Logger): Promise<void> {
    assertTransition(record.status, STATUS.failed);
    if ((await this.deps.queue.failExport(record.id, lease.current(), error)) === "ok") {
      log.warn({ code: error.code }, "export failed");
      await this.purge(record, STATUS.failed, log);
    }
  }

  /** Deletes a failed or canceled export's files; when the object store is down, the sweeper retries. */
  private async purge(record: ExportRecord, status: ExportStatus, log: Logger): Promise<void> {
    try {
      await purgeExportFiles(this.deps.queue, this.deps.storage, { ...record, status }, this.deps.clock());
    } catch (err) {
      log.warn({ err }, "deleting the export's files failed; the retention sweeper retries");
    }
  }
}

/** The final error of an export whose worker died `takeovers` times in a row without a part done. */
function crashedError(takeovers: number): ExportError {
  return {
    code: "worker_crashed",
    message: `The export crashed its worker ${takeovers} times in a row (the process was killed or ran out of memory) before finishing a part, so it is not tried again. Creating it again may succeed; a narrower range or fewer columns makes it lighter.`,
    retryable: ERROR_CATALOGUE.worker_crashed.retryable,
  };
}

/**
 * Which dependency a run failure says is temporarily away (worth a wait and a pass from the last
 * published part), or null: a refusal, a permanent storage error, a bug.
 */
function dependencyAway(err: unknown): "object store" | "source" | null {
  if (err instanceof StorageError) return isPermanentStorageError(err) ? null : "object store";
  return isSourceUnavailable(err) ? "source" : null;
}

const SYSTEM_MESSAGES: Partial<Record<ErrorCode, string>> = {
  storage_error: "Writing the export's files failed, also on retry; creating it again later may succeed.",
  source_unavailable:
    "The dataset's source could not be reached or stopped answering, also on retry; creating the export again later may succeed.",
};

/** A failure on our side: the client gets the code, the details stay in the log. */
function systemError(code: ErrorCode): ExportError {
  return {
    code,
    message:
      SYSTEM_MESSAGES[code] ?? "The export stopped on an internal error; creating it again may succeed.",
    retryable: ERROR_CATALOGUE[code].retryable,
  };
}
