/**
 * Creating an export: the request is checked against its dataset and the tenant's plan, then queued
 * under the tenant's queue cap and an optional Idempotency-Key (one store transaction), or only
 * estimated (a dry run). The in-process worker is woken for a new export.
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { canonicalJson } from "../domain/canonical-json.js";
import { type CreateExportInput, type DatasetDescriptor, normalizeCreateRequest } from "../domain/dataset.js";
import { AppError, ExportFailure, serviceUnavailable, tenantDisabled } from "../domain/errors.js";
import { datasetItems, type ExportRecord, itemRequest, newExport } from "../domain/export.js";
import { newId } from "../domain/ids.js";
import type { TenantLimits } from "../domain/tenant.js";
import type { ExportsPort } from "../metadata/types.js";
import type { DatasetRegistry } from "../sources/registry.js";
import { estimateWithin, isSourceUnavailable } from "./source-unavailable.js";

export interface CreateExportDeps {
  exports: ExportsPort;
  datasets: DatasetRegistry;
  /** Called after an export is queued, so an in-process worker starts at once. */
  onExportQueued: () => void;
}

/** Who creates the export: the authenticated caller's tenant, its plan and queue cap, and who acts. */
export interface ExportCreator {
  tenantId: string;
  tenantName: string;
  plan: string;
  limits: Pick<TenantLimits, "maxQueued">;
  /** Recorded as the export's `created_by` (`key:<prefix>`, `token:<sub>`, `operator:<prefix>`). */
  actor: string;
}

export interface CreateExportCommand {
  creator: ExportCreator;
  /** The body as validated by the route's schema (defaults filled in). */
  body: CreateExportInput;
  /** The Idempotency-Key header, when given. */
  idempotencyKey: string | undefined;
  now: number;
  log: Pick<Logger, "info" | "warn">;
}

/**
 * What a create ended in: a dry run's estimate, or the queued export — `created` now, or `replayed`
 * (the same request under the same Idempotency-Key within 24 hours).
 */
export type CreateExportResult =
  | {
      kind: "dry_run";
      dataset: DatasetDescriptor;
      estimatedRows: number | null;
      /** Several datasets: the bundle's (or first dataset's) name and the whole export's limits. */
      whole: { name: string; limits: { maxRows: number; maxBytes: number } } | null;
    }
  | { kind: "created" | "replayed"; record: ExportRecord };

/**
 * Throws AppError: the request's own codes (invalid_request, invalid_date_range, plan_required…),
 * `idempotency_conflict` (the key was used with another body), `tenant_disabled` (the tenant was
 * disabled or deleted since its key was verified), `too_many_exports` (queue cap;
 * Retry-After 30); for a dry run, `service_unavailable` (its dataset's source is away or does not
 * answer within ESTIMATE_WAIT_MS; Retry-After) or `source_error` (the source refuses the request).
 */
export async function createExport(
  deps: CreateExportDeps,
  command: CreateExportCommand,
): Promise<CreateExportResult> {
  const { creator, body, now, log } = command;
  const request = normalizeCreateRequest(
    body,
    deps.datasets.descriptors,
    now,
    creator.plan,
    deps.datasets.bundles,
  );
  const parts = datasetItems(request).map((_, i) => {
    const found = deps.datasets.get(itemRequest(request, i).dataset);
    if (!found) throw new Error("a validated dataset vanished");
    return { dataset: found, request: itemRequest(request, i) };
  });
  const dataset = (parts[0] as (typeof parts)[number]).dataset;
  // Authentication already read the tenant; no second lookup on every create.
  const tenant = { id: creator.tenantId, name: creator.tenantName };
  // A source that is away does not stop an export from being queued (the worker estimates beside
  // the run and retries), but a dry run has nothing to answer without it.
  // Several datasets: the sum of their estimates, unknown when one is.
  const estimatedRows = await Promise.all(parts.map((p) => estimateWithin(p.dataset, tenant, p.request, now)))
    .then((counts) =>
      counts.some((c) => c === null) ? null : counts.reduce((sum: number, c) => sum + (c as number), 0),
    )
    .catch((err: unknown) => {
      log.warn({ err, dataset: dataset.descriptor.name }, "estimating rows failed");
      if (!body.dry_run) return null;
      if (err instanceof ExportFailure) throw err;
      if (isSourceUnavailable(err)) {
        throw serviceUnavailable(
          "The dataset's database cannot be reached or did not answer in time. Retry after the Retry-After seconds.",
        );
      }
      throw err;
    });
  if (body.dry_run) {
    const whole = request.totalLimits
      ? { name: request.bundle ?? request.dataset, limits: request.totalLimits }
      : null;
    return { kind: "dry_run", dataset: dataset.descriptor, estimatedRows, whole };
  }

  const record = newExport({
    id: newId(),
    tenantId: creator.tenantId,
    request,
    now,
    estimatedRows,
    createdBy: creator.actor,
  });
  const outcome = await deps.exports.createExport(record, {
    maxQueued: creator.limits.maxQueued,
    // The body as validated (defaults filled in), canonical: key order and spacing do not matter.
    idempotency: command.idempotencyKey
      ? {
          key: command.idempotencyKey,
          requestHash: createHash("sha256").update(canonicalJson(body)).digest("hex"),
        }
      : null,
  });
  switch (outcome.kind) {
    case "idempotency_conflict":
      throw new AppError(
        "idempotency_conflict",
        "This Idempotency-Key was used with a different request body in the last 24 hours.",
        [{ field: "idempotency-key", code: "reused", message: "Use a new key for a new request." }],
      );
    case "queue_full":
      throw new AppError(
        "too_many_exports",
        `${outcome.queued} exports are already waiting; the limit is ${creator.limits.maxQueued}.`,
        [],
        { "retry-after": "30" },
      );
    case "tenant_disabled":
      throw tenantDisabled();
    case "created":
      log.info({ export_id: record.id, dataset: record.dataset }, "export queued");
      deps.onExportQueued();
      return { kind: "created", record: outcome.record };
    case "replayed":
      return { kind: "replayed", record: outcome.record };
  }
}
