/**
 * Delivering one claimed webhook delivery: build the event's body from the outbox row (the export
 * as it was at the status change, presented like GET /v1/exports/{id} but never with a signed
 * link), sign it with the endpoint's secret(s), POST it (webhooks/sender.ts), record the attempt,
 * and decide what follows: delivered on 2xx; 410 disables the endpoint; otherwise the next retry
 * of the schedule (domain/webhooks.ts), or abandoned once it is spent; an endpoint whose every
 * attempt failed for `disableAfterMs` is disabled and the operator told (log line and metric).
 */
import type { Logger } from "pino";
import type { ExportRecord } from "../domain/export.js";
import { newId } from "../domain/ids.js";
import {
  DELIVERY,
  type DeliveryState,
  judgeAnswer,
  nextRetryDelay,
  TEST_EVENT_TYPE,
  type WebhookAttempt,
} from "../domain/webhooks.js";
import type { ClaimedDelivery, JobQueuePort, Lease, WebhookQueuePort } from "../metadata/types.js";
import type { Metrics } from "../metrics/metrics.js";
import type { SecretBox } from "../webhooks/secret-box.js";
import { postWebhook, type SendResult, type UrlPolicy } from "../webhooks/sender.js";
import { signDelivery } from "../webhooks/signer.js";

/** The export document of GET /v1/exports/{id}, without links (the HTTP presenter, passed in). */
export type PresentExport = (record: ExportRecord) => Promise<unknown>;

export interface DeliveryDeps {
  store: WebhookQueuePort & Pick<JobQueuePort, "getTenant">;
  secrets: SecretBox;
  present: PresentExport;
  /** Base of the API URLs in the payload (EXPORTD_PUBLIC_URL). */
  publicUrl: string;
  policy: UrlPolicy;
  timeoutMs: number;
  retryScale: number;
  disableAfterMs: number;
  metrics: Pick<Metrics, "webhookAttempted" | "webhookDelivered" | "webhookEndpointDisabled">;
  logger: Logger;
  clock: () => number;
  /** The POST itself (tests may wrap it); postWebhook by default. */
  send?: typeof postWebhook;
}

/**
 * The body of an event, the same on every attempt: id, type, timestamp, tenant and data — for an
 * export event the export document and the API URLs that hand out fresh download links.
 */
export async function buildEventBody(
  delivery: Pick<ClaimedDelivery, "eventId" | "eventType" | "eventCreatedAt" | "tenantId" | "data">,
  deps: Pick<DeliveryDeps, "present" | "publicUrl" | "store">,
): Promise<string> {
  const tenant = delivery.tenantId ? await deps.store.getTenant(delivery.tenantId) : null;
  const head = {
    id: delivery.eventId,
    type: delivery.eventType,
    timestamp: new Date(delivery.eventCreatedAt).toISOString(),
    tenant: delivery.tenantId ? { id: delivery.tenantId, name: tenant?.name ?? null } : null,
  };
  if (delivery.eventType === TEST_EVENT_TYPE)
    return JSON.stringify({ ...head, data: JSON.parse(delivery.data) });
  const record = JSON.parse(delivery.data) as ExportRecord;
  const self = `${deps.publicUrl}/v1/exports/${record.id}`;
  return JSON.stringify({
    ...head,
    data: { export: await deps.present(record), links: { export: self, download: `${self}/download` } },
  });
}

/** The secrets that sign now: the current one, and the previous one during its rotation overlap. */
function signingSecrets(d: ClaimedDelivery, secrets: SecretBox, now: number): string[] {
  const list = [secrets.open(d.sealedSecret, d.endpointId)];
  if (d.sealedPreviousSecret && d.previousSecretExpiresAt !== null && d.previousSecretExpiresAt > now)
    list.push(secrets.open(d.sealedPreviousSecret, d.endpointId));
  return list;
}

/** Sends one claimed delivery under `lease` and records how it went. Never throws for the receiver's faults. */
export async function deliverWebhook(
  deps: DeliveryDeps,
  d: ClaimedDelivery,
  lease: Lease,
): Promise<{ state: DeliveryState; retryInMs: number | null }> {
  const { store, logger, metrics } = deps;
  const log = logger.child({ delivery_id: d.id, event_id: d.eventId, endpoint_id: d.endpointId });
  const startedAt = deps.clock();
  let result: SendResult;
  try {
    const body = await buildEventBody(d, deps);
    const headers = signDelivery(d.eventId, startedAt, body, signingSecrets(d, deps.secrets, startedAt));
    result = await (deps.send ?? postWebhook)(d.url, { ...headers }, body, {
      policy: deps.policy,
      timeoutMs: deps.timeoutMs,
    });
  } catch (err) {
    // A secret that does not open, an event that does not parse: logged, retried like a failure.
    log.error({ err }, "webhook delivery could not be prepared");
    result = {
      status: null,
      durationMs: deps.clock() - startedAt,
      error: (err as Error).message,
      response: null,
    };
  }
  const verdict = judgeAnswer(result.status);
  const attempts = d.attempts + 1;
  const retryIn = verdict === "retry" ? nextRetryDelay(attempts, deps.retryScale) : null;
  const state: DeliveryState =
    verdict === "delivered" ? DELIVERY.delivered : retryIn !== null ? DELIVERY.pending : DELIVERY.abandoned;
  const attempt: WebhookAttempt = {
    id: newId(),
    deliveryId: d.id,
    eventId: d.eventId,
    endpointId: d.endpointId,
    attemptedAt: startedAt,
    status: result.status,
    durationMs: result.durationMs,
    error: result.error,
    response: result.response,
  };
  const finishedAt = deps.clock();
  const recorded = await store.recordWebhookAttempt({
    deliveryId: d.id,
    eventId: d.eventId,
    endpointId: d.endpointId,
    owner: lease.owner,
    attempt,
    state,
    nextAttemptAt: retryIn === null ? null : finishedAt + retryIn,
  });
  const outcome =
    recorded.check === "lost"
      ? "lost"
      : verdict === "delivered"
        ? "delivered"
        : verdict === "gone"
          ? "gone"
          : state === DELIVERY.pending
            ? "retrying"
            : "abandoned";
  metrics.webhookAttempted(outcome, result.durationMs / 1000);
  if (recorded.check === "lost") {
    log.warn("webhook delivery's lease was lost; another deliverer owns it");
    return { state, retryInMs: null };
  }
  if (verdict === "delivered") {
    metrics.webhookDelivered((finishedAt - d.eventCreatedAt) / 1000);
    return { state, retryInMs: null };
  }
  log.info(
    { status: result.status, error: result.error, attempts, next_in_ms: retryIn },
    "webhook attempt failed",
  );
  if (verdict === "gone") {
    await store.setWebhookEndpointEnabled(d.endpointOwner, d.endpointId, false, "gone", finishedAt);
    metrics.webhookEndpointDisabled("gone");
    log.warn({ url: d.url }, "webhook endpoint answered 410 Gone: disabled");
  } else if (recorded.failingSince !== null && finishedAt - recorded.failingSince >= deps.disableAfterMs) {
    await store.setWebhookEndpointEnabled(d.endpointOwner, d.endpointId, false, "failing", finishedAt);
    metrics.webhookEndpointDisabled("failing");
    // The operator is told: this line (error level), the metric, and `exportd webhooks troubled`.
    log.error(
      {
        url: d.url,
        tenant_id: d.endpointOwner,
        failing_since: new Date(recorded.failingSince).toISOString(),
      },
      "webhook endpoint failed on every attempt for too long: disabled",
    );
  }
  return { state, retryInMs: retryIn };
}
