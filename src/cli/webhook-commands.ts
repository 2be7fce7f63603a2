/**
 * `exportd webhooks …`: the operator's product-wide webhook endpoints (they receive every tenant's
 * events), and the operator's view of endpoints in trouble across tenants. Talks to the metadata
 * store directly, like the other admin commands; writes go through usecases/operator-webhooks.ts
 * and are audited as `cli:<user>`, like the operator API's.
 */
import { parseArgs } from "node:util";
import type { Config } from "../config/index.js";
import { AppError } from "../domain/errors.js";
import {
  EXPORT_EVENT_TYPES,
  type ExportEventType,
  isExportEventType,
  type WebhookEndpoint,
} from "../domain/webhooks.js";
import type { OperatorPort, WebhooksPort } from "../metadata/types.js";
import { type Actor, stampOf } from "../usecases/audit.js";
import type { OperatorWebhookDeps } from "../usecases/operator-webhooks.js";
import * as audited from "../usecases/operator-webhooks.js";
import {
  listEndpointDeliveries,
  listTroubledEndpoints,
  listWebhookEndpoints,
} from "../usecases/webhook-endpoints.js";
import { SecretBox } from "../webhooks/secret-box.js";
import { UsageError } from "./admin-commands.js";

const out = (line: string) => process.stdout.write(`${line}\n`);
const iso = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString());

export const WEBHOOKS_USAGE = `  webhooks add URL [--events a,b] [--description D]
                                             Add a product-wide endpoint (every tenant's events); the secret is the last line
  webhooks list                              Product-wide endpoints
  webhooks enable ID | disable ID | remove ID
  webhooks rotate ID                         New secret (last line); the old one signs too for 24 hours
  webhooks test ID                           Send a webhook.test event to the endpoint
  webhooks deliveries ID [--limit N]         The endpoint's delivery log, newest first
  webhooks redeliver ID EVENT_ID             Send the event to the endpoint again
  webhooks troubled                          Endpoints of any tenant failing now or disabled by 410 / failing`;

function parseEvents(text: string | undefined): ExportEventType[] | undefined {
  if (text === undefined) return undefined;
  const events = text.split(",").map((e) => e.trim());
  const bad = events.filter((e) => !isExportEventType(e));
  if (bad.length || events.length === 0)
    throw new UsageError(
      `Unknown event type(s): ${bad.join(", ")}. Types: ${EXPORT_EVENT_TYPES.join(", ")}.`,
    );
  return events as ExportEventType[];
}

function describe(e: WebhookEndpoint): string {
  const state = e.enabled ? "enabled" : `disabled (${e.disabledReason ?? "manual"} at ${iso(e.disabledAt)})`;
  return (
    `${e.id}  ${e.tenantId === null ? "product-wide" : `tenant ${e.tenantId}`}  ${e.url}  ${e.events.join(",")}  ` +
    `${state}  failing since ${iso(e.failingSince)}  ${e.source}`
  );
}

/** Runs one `webhooks` command against the store. */
export async function webhooksCommand(
  store: WebhooksPort & Pick<OperatorPort, "appendAudit">,
  args: string[],
  config: Config,
  secretsKey: string,
  actor: Actor,
): Promise<void> {
  const [action, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { events: { type: "string" }, description: { type: "string" }, limit: { type: "string" } },
  });
  const deps: OperatorWebhookDeps = {
    store,
    audit: store,
    secrets: new SecretBox(secretsKey),
    policy: { allowHttp: config.webhooks.allowHttp, allowedNetworks: config.webhooks.allowedNetworks },
    clock: Date.now,
  };
  const now = () => stampOf(actor, Date.now());
  const id = () => {
    const value = positionals[0];
    if (!value) throw new UsageError(`webhooks ${action} needs the endpoint's ID.`);
    return value;
  };
  try {
    switch (action) {
      case "add": {
        const url = positionals[0];
        if (!url) throw new UsageError("webhooks add needs the URL.");
        const created = await audited.createProductEndpoint(deps, now(), {
          url,
          events: parseEvents(values.events),
          description: values.description,
        });
        out(describe(created.endpoint));
        out("The signing secret (shown only now):");
        out(created.secret);
        return;
      }
      case "list":
        for (const e of await listWebhookEndpoints(deps, null)) out(describe(e));
        return;
      case "enable":
      case "disable":
        out(describe(await audited.setProductEndpointEnabled(deps, now(), id(), action === "enable")));
        return;
      case "remove":
        await audited.deleteProductEndpoint(deps, now(), id());
        out("Removed.");
        return;
      case "rotate": {
        const rotated = await audited.rotateProductEndpointSecret(deps, now(), id());
        out(
          `The old secret signs too until ${iso(rotated.endpoint.previousSecretExpiresAt)}. The new secret:`,
        );
        out(rotated.secret);
        return;
      }
      case "test":
        out(`Queued test event ${(await audited.sendProductTestEvent(deps, now(), id())).id}.`);
        return;
      case "deliveries": {
        const limit = values.limit === undefined ? 20 : Number(values.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
          throw new UsageError("--limit must be an integer from 1 to 1000.");
        for (const d of await listEndpointDeliveries(deps, null, id(), { limit })) {
          out(
            `${d.eventId}  ${d.eventType}  ${d.state}  attempts ${d.attempts}  next ${iso(d.nextAttemptAt)}`,
          );
          for (const a of d.log)
            out(
              `    ${iso(a.attemptedAt)}  ${a.status ?? "-"}  ${a.durationMs} ms  ${a.error ?? ""}`.trimEnd(),
            );
        }
        return;
      }
      case "redeliver": {
        const eventId = positionals[1];
        if (!eventId) throw new UsageError("webhooks redeliver needs the endpoint's ID and the EVENT_ID.");
        await audited.redeliverToProductEndpoint(deps, now(), id(), eventId);
        out("Queued.");
        return;
      }
      case "troubled":
        for (const e of await listTroubledEndpoints(deps)) out(describe(e));
        return;
      default:
        throw new UsageError(`Unknown webhooks command "${action ?? ""}".`);
    }
  } catch (err) {
    // not_found, invalid_webhook_url: the message is for the operator.
    if (err instanceof AppError) throw new UsageError(err.message);
    throw err;
  }
}
