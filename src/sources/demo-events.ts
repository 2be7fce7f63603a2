/**
 * The built-in demo dataset `events`: a deterministic stream of product events for any tenant,
 * generated on the fly — nothing is stored and the first start does no work. Each tenant has one
 * event in every 2-second slot (about 1.3 million rows per 30 days); everything about an event is a
 * hash of the tenant and the slot, so the same range always yields the same rows, and a cursor is
 * just the slot number.
 */
import type { DatasetDescriptor } from "../domain/dataset.js";
import type { ExportRequest } from "../domain/export.js";
import { TimestampFormatter } from "../domain/time.js";
import type { Cell, Dataset, ReadOptions, RowBatch, TenantRef } from "./types.js";

const SLOT_MS = 2000;
const BATCH_ROWS = 4096;
const USERS = 5000;

/** Event types with their share in percent (cumulative thresholds below). */
const TYPES = [
  ["page_view", 50],
  ["click", 25],
  ["purchase", 10],
  ["logout", 10],
  ["signup", 5],
] as const;
const TYPE_BY_PERCENT: string[] = TYPES.flatMap(([name, share]) => Array<string>(share).fill(name));
const TYPE_SHARE = new Map<string, number>(TYPES.map(([name, share]) => [name, share / 100]));

// Values chosen to exercise encoders: quotes, delimiters, non-ASCII and emoji.
const PATHS = [
  "/",
  "/pricing",
  "/docs/exports",
  '/search?q="export, csv"',
  "/café",
  "/launch 🎉",
  "/settings;team",
];
const ELEMENTS = ["button#export", "a.nav-link", 'input[name="q"]', "div.card"];
const CURRENCIES = ["EUR", "USD", "GBP", "JPY"];
const PLANS = ["free", "pro", "enterprise"];

export const DEMO_EVENTS_DESCRIPTOR: DatasetDescriptor = {
  name: "events",
  description: "Built-in demo: product events, one every ~2 seconds per tenant, generated deterministically.",
  columns: [
    { name: "id", type: "string", description: "Event id, unique per tenant." },
    {
      name: "occurred_at",
      type: "timestamp",
      description: "When the event happened (ISO 8601 with offset).",
    },
    { name: "type", type: "string", description: "page_view, click, purchase, logout or signup." },
    { name: "user_id", type: "string", description: "The acting user, user_1 … user_5000." },
    { name: "properties", type: "json", description: "Event properties as JSON text." },
  ],
  filters: [
    { name: "type", type: "string", description: "One event type or a list." },
    { name: "user_id", type: "string", description: "One user id or a list." },
  ],
  formats: ["csv", "jsonl"],
  limits: { maxRangeDays: 31, maxRows: 5_000_000, maxBytes: 2 * 1024 ** 3 },
  plans: null,
};

/** murmur3's 32-bit finalizer: a fast, well-spread integer hash. */
function mix(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function seedOf(tenantId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < tenantId.length; i++) h = Math.imul(h ^ tenantId.charCodeAt(i), 0x01000193);
  return mix(h);
}

interface DemoEvent {
  at: number;
  id: string;
  type: string;
  userId: string;
  properties: string;
}

function eventAt(seed: number, slot: number): DemoEvent {
  const h1 = mix(seed ^ slot);
  const h2 = mix(h1 ^ 0x9e3779b9);
  const h3 = mix(h2 + 0x632be5ab);
  const type = TYPE_BY_PERCENT[h2 % 100] as string;
  let properties: string;
  switch (type) {
    case "page_view":
      properties = JSON.stringify({ path: PATHS[h3 % PATHS.length], duration_ms: h3 % 30_000 });
      break;
    case "click":
      properties = JSON.stringify({
        element: ELEMENTS[h3 % ELEMENTS.length],
        x: h3 % 1920,
        y: (h3 >>> 11) % 1080,
      });
      break;
    case "purchase":
      properties = JSON.stringify({
        amount_cents: h3 % 100_000,
        currency: CURRENCIES[(h3 >>> 17) % CURRENCIES.length],
        items: 1 + ((h3 >>> 5) % 9),
      });
      break;
    case "signup":
      properties = JSON.stringify({ plan: PLANS[h3 % PLANS.length], referrer: h3 % 2 ? null : "newsletter" });
      break;
    default:
      properties = "{}";
  }
  return {
    at: slot * SLOT_MS + (h1 % SLOT_MS),
    id: `evt_${slot.toString(36)}${(h1 >>> 12).toString(36).padStart(4, "0")}`,
    type,
    userId: `user_${1 + (h3 % USERS)}`,
    properties,
  };
}

function slotRange(request: ExportRequest, now: number): { first: number; last: number } {
  const end = Math.min(request.to, now);
  return { first: Math.floor(request.from / SLOT_MS), last: Math.floor((end - 1) / SLOT_MS) };
}

export class DemoEventsDataset implements Dataset {
  /** The descriptor can be replaced to offer the same data under another name, plans or limits. */
  constructor(readonly descriptor: DatasetDescriptor = DEMO_EVENTS_DESCRIPTOR) {}

  async estimateRows(_tenant: TenantRef, request: ExportRequest, now: number): Promise<number> {
    const { first, last } = slotRange(request, now);
    let rows = Math.max(0, last - first + 1);
    const types = request.filters.type;
    if (types) rows *= types.reduce((sum, t) => sum + (TYPE_SHARE.get(t) ?? 0), 0);
    const users = request.filters.user_id;
    if (users) rows *= Math.min(1, users.length / USERS);
    return Math.round(rows);
  }

  async *read(options: ReadOptions): AsyncIterable<RowBatch> {
    const { request } = options;
    const seed = seedOf(options.tenant.id);
    const { first, last } = slotRange(request, options.now);
    const types = request.filters.type ? new Set(request.filters.type) : null;
    const users = request.filters.user_id ? new Set(request.filters.user_id) : null;
    const formatter = new TimestampFormatter(request.timezone);
    const pick = request.columns.map((name) => {
      switch (name) {
        case "id":
          return (e: DemoEvent): Cell => e.id;
        case "occurred_at":
          return (e: DemoEvent): Cell => formatter.format(e.at);
        case "type":
          return (e: DemoEvent): Cell => e.type;
        case "user_id":
          return (e: DemoEvent): Cell => e.userId;
        default:
          return (e: DemoEvent): Cell => e.properties;
      }
    });
    const span = Math.max(1, request.to - request.from);

    let slot = options.after === null ? first : Number(options.after) + 1;
    while (slot <= last) {
      options.signal.throwIfAborted();
      const end = Math.min(last, slot + BATCH_ROWS - 1);
      const rows: Cell[][] = [];
      const slots: number[] = [];
      for (; slot <= end; slot++) {
        const e = eventAt(seed, slot);
        if (e.at < request.from || e.at >= request.to || e.at >= options.now) continue;
        if (types && !types.has(e.type)) continue;
        if (users && !users.has(e.userId)) continue;
        rows.push(pick.map((f) => f(e)));
        slots.push(slot);
      }
      const covered = Math.min(span, slot * SLOT_MS - request.from);
      yield {
        kind: "cells",
        rows,
        cursor: String(slot - 1),
        rowCursor: (index) => String(slots[index]),
        position: Math.max(0, covered / span),
      };
    }
  }
}
