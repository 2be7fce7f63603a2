/**
 * The export worker: claims exports with a lease, runs the pipeline, keeps the lease alive with a
 * heartbeat and finishes the export. The heartbeat is also how a cancel arrives: once the export is
 * no longer running under this worker's lease, the run is aborted within one heartbeat.
 *
 * A claimed export resumes after its last published part. A run ends in exactly one of:
 * succeeded; failed (user error, retries used up, or its worker crashed too often); back in the
 * queue with back-off (retryable error, or shutdown); abandoned (canceled or taken over — the new
 * owner or the cancel owns it now). A failing object store does not end a run: it waits with
 * back-off and goes on from the last published part, until EXPORTD_STORAGE_RETRY_SECONDS is spent.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Config } from "../config/index.js";
import { ERROR_CATALOGUE, type ErrorCode } from "../domain/errors.js";
import {
  advanceProgress,
  type ExportError,
  type ExportPart,
  type ExportProgress,
  type ExportRecord,
  retryDelayMs,
} from "../domain/export.js";
import { exportPrefix } from "../domain/naming.js";
import type { ClaimedExport, Lease, LeaseCheck, MetadataStore } from "../metadata/types.js";
import { StoreUnavailableError } from "../metadata/unavailable.js";
import type { ExportOutcome, Metrics } from "../metrics/metrics.js";
import { ExportFailure, type PipelineProgress, runExport } from "../pipeline/run-export.js";
import { purgeExportFiles } from "../purge.js";
import type { DatasetRegistry } from "../sources/registry.js";
import type { Dataset, TenantRef } from "../sources/types.js";
import { StorageError, storageOp } from "../storage/errors.js";
import { Backoff, isPermanentStorageError, STORAGE_BACKOFF } from "../storage/retry.js";
import type { ObjectStore } from "../storage/types.js";
import { OutageLog } from "./outage.js";

export interface WorkerDeps {
  store: MetadataStore;
  storage: ObjectStore;
  datasets: DatasetRegistry;
  config: Pick<Config, "worker" | "gzipLevel" | "retentionDays">;
  logger: Logger;
  metrics: Metrics;
  clock?: () => number;
}

/** Why a run was aborted from outside the pipeline. */
class RunAborted extends Error {
  constructor(readonly reason: "lost" | "shutdown") {
    super(
      reason === "lost"
        ? "the export is no longer running under this worker's lease"
        : "worker shutting down",
    );
  }
}

const PROGRESS_EVERY_MS = 500;
/** How often a checkpoint write is tried again while the metadata store is unavailable. */
const STORE_RETRY_MS = 500;

/**
 * One run of an export, carried across its passes: a pass that the object store breaks off is
 * followed by another from the checkpoint (the last published part, its cursor and progress).
 */
interface RunState {
  record: ExportRecord;
  dataset: Dataset;
  tenant: TenantRef;
  signal: AbortSignal;
  log: Logger;
  parts: ExportPart[];
  cursor: string | null;
  progress: ExportProgress;
  /** The latest row estimate, and the one the store holds. */
  estimatedRows: number | null;
  storedEstimate: number | null;
  /** Waits between passes; reset by each published part. */
  backoff: Backoff;
  /**
   * When the lease was last renewed (epoch ms; shared with the heartbeat): past leaseMs without a renewal another worker may
   * own the export, so the run stops (an outage of the store longer than the lease costs the part
   * in progress; the takeover that follows is no failed attempt).
   */
  lease: { renewedAt: number };
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
  private loopDone: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private readonly clock: () => number;
  private readonly claiming: OutageLog;

  constructor(private readonly deps: WorkerDeps) {
    this.clock = deps.clock ?? Date.now;
    this.claiming = new OutageLog(deps.logger, "claiming");
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
      for (const run of this.runs.values()) run.controller.abort(new RunAborted("shutdown"));
    };
    const deadline = graceMs > 0 ? setTimeout(abortAll, graceMs) : null;
    if (!deadline) abortAll();
    await Promise.all([...this.runs.values()].map((r) => r.done));
    if (deadline) clearTimeout(deadline);
    await this.loopDone;
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

  private async run(record: ExportRecord, controller: AbortController): Promise<ExportOutcome> {
    const { store, datasets, config } = this.deps;
    const log = this.deps.logger.child({
      export_id: record.id,
      tenant_id: record.tenantId,
      attempt: record.attempts,
      run: record.runs,
    });
    const { signal } = controller;
    const lease = { renewedAt: this.clock() };
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
      if (record.takeovers > config.worker.maxTakeovers) {
        await this.fail(record, this.crashedError(record.takeovers), log);
        return "failed";
      }
      if (record.attempts > config.worker.maxAttempts) {
        await this.fail(record, record.error ?? this.systemError("internal_error"), log);
        return "failed";
      }
      const dataset = datasets.get(record.dataset);
      if (!dataset) throw new Error(`dataset ${record.dataset} is not configured on this worker`);
      const tenant = await store.getTenant(record.tenantId);
      if (!tenant) throw new Error(`tenant ${record.tenantId} of export ${record.id} does not exist`);
      log.info({ resume_part: record.parts.length, takeovers: record.takeovers }, "export started");

      const state: RunState = {
        record,
        dataset,
        tenant: { id: tenant.id, name: tenant.name },
        signal,
        log,
        parts: [...record.parts],
        cursor: record.cursor,
        progress: record.progress,
        estimatedRows: record.estimatedRows,
        storedEstimate: record.estimatedRows,
        backoff: new Backoff({ budgetMs: config.worker.storageRetryMs, ...STORAGE_BACKOFF }, this.clock),
        lease,
      };
      // Estimated once, beside the first run rather than in front of it (an exact count of a large
      // range takes a while); the next progress write carries it. A resumed run keeps the estimate.
      const estimating =
        state.estimatedRows === null
          ? dataset.estimateRows(tenant, record.request, this.clock()).then(
              (rows) => {
                state.estimatedRows = rows;
              },
              (err: unknown) => log.warn({ err }, "row estimate failed; progress goes on without it"),
            )
          : null;

      const { backoff } = state;
      for (;;) {
        try {
          await this.runPass(state);
          break;
        } catch (err) {
          // A part stream cannot be replayed mid-stream: on an object-store failure, wait and run
          // again from the last published part, within this attempt, until the budget is spent.
          // The heartbeat goes on meanwhile, so nobody takes the export over.
          if (signal.aborted || !(err instanceof StorageError) || isPermanentStorageError(err)) throw err;
          const delay = backoff.next();
          if (delay === null) throw err;
          this.deps.metrics.storageRetried();
          log.warn(
            { err, retry_in_ms: Math.round(delay), failures: backoff.failures },
            "object store failed; resuming from the last published part after a pause",
          );
          await sleep(delay, undefined, { signal });
        }
      }

      signal.throwIfAborted();
      // An export that finished before its count: record the estimate with the final progress.
      await estimating;
      if (state.estimatedRows !== state.storedEstimate) {
        const check = await store.updateProgress(
          record.id,
          this.lease(),
          state.progress,
          state.estimatedRows,
        );
        if (check === "lost") throw new RunAborted("lost");
      }
      const expiresAt = this.clock() + config.retentionDays * 86_400_000;
      const completed = await this.leaseWrite(state, () =>
        store.completeExport(record.id, this.lease(), expiresAt),
      );
      if (completed === "lost") throw new RunAborted("lost");
      log.info("export succeeded");
      return "succeeded";
    } catch (caught) {
      const err = signal.aborted && !(caught instanceof ExportFailure) ? signal.reason : caught;
      return await this.handleFailure(record, err, log);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /**
   * One pass of the pipeline from the run's checkpoint (its last published part), which it moves
   * forward with each part it publishes. First drops what an earlier run (or pass) left unpublished.
   */
  private async runPass(state: RunState): Promise<void> {
    const { store, storage, config } = this.deps;
    const { record, signal, log } = state;
    const prefix = exportPrefix(record.tenantId, record.id);
    const published = new Set(state.parts.map((p) => p.objectKey));
    await storageOp(async () => {
      await storage.dropIncompleteUploads(prefix);
      for (const key of await storage.list(prefix)) if (!published.has(key)) await storage.delete(key);
    });

    let lastProgressAt = 0;
    const toProgress = (p: PipelineProgress) =>
      advanceProgress(state.progress, {
        percent: Math.floor(p.position * 10_000) / 100,
        rows: p.rows,
        parts: p.parts,
      });
    await runExport({
      dataset: state.dataset,
      storage,
      tenant: state.tenant,
      exportId: record.id,
      run: record.runs,
      request: record.request,
      gzipLevel: config.gzipLevel,
      startPart: state.parts.length,
      startRows: state.parts.reduce((sum, p) => sum + p.rows, 0),
      startBytes: state.parts.reduce((sum, p) => sum + p.bytes, 0),
      after: state.cursor,
      signal,
      now: this.clock(),
      onPart: async (part, cursor, p) => {
        const progress = toProgress(p);
        const check = await this.leaseWrite(state, () =>
          store.recordPart(record.id, this.lease(), part, cursor, progress),
        );
        if (check === "lost") {
          // Nobody else writes this key (it carries our run), so deleting it is safe. Should the
          // store fail now, the new owner's resume or the purge deletes it (no part row names it).
          await storage.delete(part.objectKey).catch((err: unknown) => log.warn({ err }, "late part left"));
          throw new RunAborted("lost");
        }
        state.parts.push(part);
        state.cursor = cursor;
        state.progress = progress;
        state.backoff.reset();
        this.deps.metrics.partPublished(part.rows, part.bytes);
        log.debug({ part: part.index, rows: part.rows, bytes: part.bytes }, "part published");
        // Shutting down: this part is safe, so hand the export back now rather than start another.
        if (this.stopping) throw new RunAborted("shutdown");
      },
      onProgress: async (p) => {
        const now = this.clock();
        if (now - lastProgressAt < PROGRESS_EVERY_MS) return;
        lastProgressAt = now;
        state.progress = toProgress(p);
        let check: LeaseCheck;
        try {
          check = await store.updateProgress(record.id, this.lease(), state.progress, state.estimatedRows);
        } catch (err) {
          // Progress is advisory: the next write carries it, the heartbeat watches the lease.
          if (err instanceof StoreUnavailableError) return;
          throw err;
        }
        if (check === "lost") throw new RunAborted("lost");
        state.storedEstimate = state.estimatedRows;
      },
    });
  }

  /**
   * A checkpoint write (part, completion) that waits out a short outage of the metadata store while
   * the lease may still hold; "lost" once it cannot.
   */
  private async leaseWrite(state: RunState, write: () => Promise<LeaseCheck>): Promise<LeaseCheck> {
    for (;;) {
      try {
        const check = await write();
        if (check === "ok") state.lease.renewedAt = this.clock();
        return check;
      } catch (err) {
        if (!(err instanceof StoreUnavailableError)) throw err;
        if (this.clock() - state.lease.renewedAt > this.deps.config.worker.leaseMs)
          throw new RunAborted("lost");
      }
      await sleep(STORE_RETRY_MS, undefined, { signal: state.signal });
    }
  }

  /** The final error of an export whose worker died `takeovers` times in a row without a part done. */
  private crashedError(takeovers: number): ExportError {
    return {
      code: "worker_crashed",
      message: `The export crashed its worker ${takeovers} times in a row (the process was killed or ran out of memory) before finishing a part, so it is not tried again. Creating it again may succeed; a narrower range or fewer columns makes it lighter.`,
      retryable: ERROR_CATALOGUE.worker_crashed.retryable,
    };
  }

  /** A failure on our side: the client gets the code, the details stay in the log. */
  private systemError(code: ErrorCode): ExportError {
    return {
      code,
      message:
        code === "storage_error"
          ? "Writing the export's files failed, also on retry; creating it again later may succeed."
          : "The export stopped on an internal error; creating it again may succeed.",
      retryable: ERROR_CATALOGUE[code].retryable,
    };
  }

  private async handleFailure(record: ExportRecord, err: unknown, log: Logger): Promise<ExportOutcome> {
    const { store, config } = this.deps;
    if (err instanceof RunAborted && err.reason === "shutdown") {
      await store.requeueExport(record.id, this.lease(), this.clock(), null);
      log.info("export handed back to the queue (shutdown)");
      return "requeued";
    }
    if (err instanceof RunAborted) {
      // Canceled, or another worker took the lease over. Only a cancel means the files must go.
      const current = await store.getExport(record.tenantId, record.id);
      if (current?.status === "canceled") {
        await this.purge(record, log);
        log.info("export canceled");
        return "canceled";
      }
      log.warn("lease lost; another worker continues this export");
      return "lost";
    }
    if (err instanceof ExportFailure) {
      await this.fail(record, { code: err.code, message: err.message, retryable: false }, log);
      return "failed";
    }
    const error = this.systemError(err instanceof StorageError ? "storage_error" : "internal_error");
    log.error({ err }, "export attempt failed");
    if (record.attempts < config.worker.maxAttempts) {
      const runAfter = this.clock() + retryDelayMs(record.attempts, config.worker.retryBaseMs);
      await store.requeueExport(record.id, this.lease(), runAfter, error);
      return "requeued";
    }
    await this.fail(record, error, log);
    return "failed";
  }

  private async fail(record: ExportRecord, error: ExportError, log: Logger): Promise<void> {
    if ((await this.deps.store.failExport(record.id, this.lease(), error)) === "ok") {
      log.warn({ code: error.code }, "export failed");
      await this.purge(record, log);
    }
  }

  /** Deletes a failed or canceled export's files; when the object store is down, the sweeper retries. */
  private async purge(record: ExportRecord, log: Logger): Promise<void> {
    try {
      await purgeExportFiles(this.deps.store, this.deps.storage, record, this.clock());
    } catch (err) {
      log.warn({ err }, "deleting the export's files failed; the retention sweeper retries");
    }
  }
}
