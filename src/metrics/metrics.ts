/**
 * Prometheus metrics, one registry per service (no global state, so tests can build several).
 * Counters move where the work happens (the worker calls the methods below); export counts by
 * status and the queue depth are read from the metadata store when /metrics is scraped, so they
 * are right across every process that shares the store.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { EXPORT_STATUSES, type ExportStatus, type RunOutcome } from "../domain/export.js";

export class Metrics {
  readonly registry = new Registry();
  private readonly rows = new Counter({
    name: "exportd_rows_exported_total",
    help: "Rows written into published parts.",
    registers: [this.registry],
  });
  private readonly bytes = new Counter({
    name: "exportd_bytes_exported_total",
    help: "Bytes of published parts (compressed size).",
    registers: [this.registry],
  });
  private readonly parts = new Counter({
    name: "exportd_parts_published_total",
    help: "Parts published.",
    registers: [this.registry],
  });
  private readonly takeovers = new Counter({
    name: "exportd_lease_takeovers_total",
    help: "Exports claimed from a worker whose lease had expired.",
    registers: [this.registry],
  });
  private readonly storageRetries = new Counter({
    name: "exportd_storage_retries_total",
    help: "Runs that waited out a failing object store and resumed from their last published part.",
    registers: [this.registry],
  });
  private readonly runs = new Histogram({
    name: "exportd_export_run_seconds",
    help: "Duration of one run of an export by outcome (a resumed export has several runs).",
    labelNames: ["outcome"],
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    registers: [this.registry],
  });

  private readonly rateLimitFallbacks = new Counter({
    name: "exportd_rate_limit_fallbacks_total",
    help: "Requests whose rate limit was counted in this process because Redis was unavailable.",
    registers: [this.registry],
  });
  private readonly webhookAttempts = new Histogram({
    name: "exportd_webhook_attempt_seconds",
    help: "Duration of one webhook POST by outcome: delivered, retrying, abandoned (schedule spent), gone (410), lost (lease).",
    labelNames: ["outcome"],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly webhookLatency = new Histogram({
    name: "exportd_webhook_delivery_latency_seconds",
    help: "From the event (the status change's commit) to its delivery's 2xx answer, retries included.",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60, 300, 3600, 86_400],
    registers: [this.registry],
  });
  private readonly webhookDisabled = new Counter({
    name: "exportd_webhook_endpoints_disabled_total",
    help: "Webhook endpoints disabled by exportd: gone (answered 410) or failing (every attempt failed for EXPORTD_WEBHOOK_DISABLE_AFTER_DAYS).",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  /** Only with Redis configured: a constant 0 would page whoever runs without Redis. */
  private redis: Gauge | null = null;
  /** Reads the download slots in use (followDownloads). */
  private downloads: (() => number) | null = null;

  /**
   * `countByStatus` is read on every scrape; while the store is unavailable, the gauges it feeds
   * are left out of the scrape rather than failing it.
   */
  constructor(
    countByStatus: () => Promise<Partial<Record<ExportStatus, number>>>,
    pendingWebhooks?: () => Promise<number>,
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: "exportd_" });
    if (pendingWebhooks)
      new Gauge({
        name: "exportd_webhook_outbox_depth",
        help: "Webhook deliveries waiting to be delivered (due now or retrying later), in every process.",
        registers: [this.registry],
        async collect() {
          try {
            this.set(await pendingWebhooks());
          } catch {
            this.reset();
          }
        },
      });
    const queueDepth = new Gauge({
      name: "exportd_queue_depth",
      help: "Exports waiting to run.",
      registers: [this.registry],
    });
    new Gauge({
      name: "exportd_exports",
      help: "Exports known to the metadata store, by status.",
      labelNames: ["status"],
      registers: [this.registry],
      // One store query per scrape serves both gauges.
      async collect() {
        let counts: Partial<Record<ExportStatus, number>>;
        try {
          counts = await countByStatus();
        } catch {
          this.reset();
          queueDepth.reset();
          return;
        }
        for (const status of EXPORT_STATUSES) this.set({ status }, counts[status] ?? 0);
        queueDepth.set(counts.queued ?? 0);
      },
    });
  }

  partPublished(rows: number, bytes: number): void {
    this.rows.inc(rows);
    this.bytes.inc(bytes);
    this.parts.inc();
  }

  leaseTakenOver(): void {
    this.takeovers.inc();
  }

  storageRetried(): void {
    this.storageRetries.inc();
  }

  runFinished(outcome: RunOutcome, seconds: number): void {
    this.runs.observe({ outcome }, seconds);
  }

  /** One webhook attempt ended (`outcome`: delivered, retrying, abandoned, gone, lost). */
  webhookAttempted(outcome: string, seconds: number): void {
    this.webhookAttempts.observe({ outcome }, seconds);
  }

  /** An event reached an endpoint `seconds` after it was written. */
  webhookDelivered(seconds: number): void {
    this.webhookLatency.observe(seconds);
  }

  webhookEndpointDisabled(reason: string): void {
    this.webhookDisabled.inc({ reason });
  }

  /** Whether the configured Redis is reachable (`exportd_redis_up`, 1 or 0). */
  redisUp(up: boolean): void {
    this.redis ??= new Gauge({
      name: "exportd_redis_up",
      help: "1 while the configured Redis is reachable, 0 while rate limits fall back to per-process counters.",
      registers: [this.registry],
    });
    this.redis.set(up ? 1 : 0);
  }

  rateLimitFallback(): void {
    this.rateLimitFallbacks.inc();
  }

  /**
   * `exportd_downloads_in_flight`: downloads being sent now (`inFlight`, read on every scrape),
   * against EXPORTD_MAX_DOWNLOADS. A slot is freed once the server sees its client leave.
   */
  followDownloads(inFlight: () => number): void {
    // The latest app built on these metrics is followed; the gauge is registered once.
    const first = this.downloads === null;
    this.downloads = inFlight;
    if (!first) return;
    const read = () => this.downloads?.() ?? 0;
    new Gauge({
      name: "exportd_downloads_in_flight",
      help: "Downloads this process is sending now; past EXPORTD_MAX_DOWNLOADS, 503 too_many_downloads.",
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
