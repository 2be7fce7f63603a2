/**
 * Webhooks on PostgreSQL with an API process and 2 worker processes (the built CLI), delivering to a
 * healthy receiver on this host:
 *   latency: BENCH_EVENTS (100) one-minute demo exports created one at a time; for each, the
 *            export's finished_at (server clock) → its export.succeeded arriving at the receiver,
 *            against the baseline of the same run: a client polling GET /v1/exports/{id} every
 *            second (what a user does without webhooks), finished_at → the poll that saw it.
 *            Workers poll once a minute: only NOTIFY can make deliveries prompt.
 *   burst: BENCH_BURST (1,000) exports finish while no process delivers webhooks (a worker with
 *          EXPORTD_WEBHOOK_CONCURRENCY=0), so 1,000 events wait in the outbox at once; then it
 *          stops and 2 worker processes that deliver start; every export.succeeded must arrive
 *          (none lost, duplicates counted apart); deliveries/s = events / (last arrival − first
 *          arrival), over BENCH_ROUNDS (3).
 * Run: npm run bench:webhooks
 */

import { spawn } from "node:child_process";
import { createTestDatabase } from "../test/helpers/postgres.js";
import { CLI, client } from "../test/helpers/server-process.js";
import { pastMidnight, waitFor } from "../test/helpers/service.js";
import { Receiver } from "../test/helpers/webhook-receiver.js";
import { startCluster, stopChild } from "./cluster.js";
import { type BenchSection, int, percentile, report, spread } from "./report.js";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 100);
const BURST = Number(process.env.BENCH_BURST ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

const ENV = {
  EXPORTD_WEBHOOK_ALLOW_HTTP: "true",
  EXPORTD_WEBHOOK_ALLOW_NETWORKS: "127.0.0.0/8",
  EXPORTD_WORKER_POLL_MS: "60000",
};

interface Succeeded {
  data: { export: { id: string; finished_at: string } };
}

/** An endpoint of the bench tenant for export.succeeded at the receiver. */
async function subscribe(base: string, key: string, url: string): Promise<void> {
  const res = await fetch(`${base}/v1/webhook_endpoints`, {
    method: "POST",
    body: JSON.stringify({ url, events: ["export.succeeded"] }),
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
  });
  if (res.status !== 201) throw new Error(`endpoint create answered ${res.status}: ${await res.text()}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function latency(databaseUrl: string): Promise<{ hook: number[]; poll: number[] }> {
  const receiver = await new Receiver().start();
  const cluster = await startCluster({ workers: 2, databaseUrl, env: ENV });
  try {
    const http = client(cluster.url, cluster.key);
    await subscribe(cluster.url, cluster.key, receiver.url);
    const to = pastMidnight();
    const hook: number[] = [];
    const poll: number[] = [];
    for (let i = 0; i < EVENTS; i++) {
      const created = await http.create({
        dataset: "events",
        from: new Date(to - 60_000).toISOString(),
        to: new Date(to).toISOString(),
      });
      if (created.status !== 202) throw new Error(`create answered ${created.status}`);
      const id = created.body.id;
      // The baseline: a client polling the status every second from the create on.
      let seenAt = 0;
      while (seenAt === 0) {
        await sleep(1000);
        if ((await http.get(id)).status === "succeeded") seenAt = Date.now();
      }
      const arrived = await waitFor(
        () => receiver.received.find((r) => (r.json as unknown as Succeeded).data.export.id === id),
        (r) => r !== undefined,
        30_000,
      );
      if (!arrived) throw new Error(`no event for ${id}`);
      const finishedAt = Date.parse((arrived.json as unknown as Succeeded).data.export.finished_at);
      hook.push(arrived.at - finishedAt);
      poll.push(seenAt - finishedAt);
    }
    return { hook: hook.sort((a, b) => a - b), poll: poll.sort((a, b) => a - b) };
  } finally {
    await cluster.stop();
    await receiver.stop();
  }
}

async function burst(
  databaseUrl: string,
): Promise<{ perSecond: number; received: number; duplicates: number }> {
  const receiver = await new Receiver().start();
  const cluster = await startCluster({ workers: 0, apiOnly: true, databaseUrl, env: ENV });
  try {
    const http = client(cluster.url, cluster.key);
    await subscribe(cluster.url, cluster.key, receiver.url);
    const to = pastMidnight();
    const ids = new Set<string>();
    for (let i = 0; i < BURST; i++) {
      const created = await http.create({
        dataset: "events",
        from: new Date(to - 60_000 - i * 1000).toISOString(),
        to: new Date(to - i * 1000).toISOString(),
      });
      if (created.status !== 202) throw new Error(`create answered ${created.status}`);
      ids.add(created.body.id);
    }
    // Phase 1: the exports finish; their events wait in the outbox (this worker delivers none).
    const exporter = spawn(process.execPath, [CLI, "serve", "--role", "worker"], {
      env: {
        ...process.env,
        ...cluster.env,
        EXPORTD_DATA_DIR: cluster.dataDir,
        EXPORTD_WEBHOOK_CONCURRENCY: "0",
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const finished = async () =>
      (await (await fetch(`${cluster.url}/metrics`)).text()).match(
        /exportd_exports\{status="succeeded"\} (\d+)/,
      )?.[1];
    await waitFor(finished, (n) => Number(n) === BURST, 600_000);
    await stopChild(exporter);
    if (receiver.received.length !== 0) throw new Error("a delivery went out before the deliverers started");
    // Phase 2: 2 worker processes deliver the backlog.
    cluster.addWorkers(2);
    const distinct = () => new Set(receiver.received.map((r) => r.id)).size;
    await waitFor(distinct, (n) => n >= BURST, 300_000);
    const exportIds = new Set(receiver.received.map((r) => (r.json as unknown as Succeeded).data.export.id));
    const lost = [...ids].filter((id) => !exportIds.has(id));
    if (lost.length) throw new Error(`${lost.length} events lost`);
    const times = receiver.received.map((r) => r.at);
    const seconds = (Math.max(...times) - Math.min(...times)) / 1000;
    return {
      perSecond: BURST / seconds,
      received: distinct(),
      duplicates: receiver.received.length - distinct(),
    };
  } finally {
    await cluster.stop();
    await receiver.stop();
  }
}

const db = await createTestDatabase();
let lat: { hook: number[]; poll: number[] };
const bursts: { perSecond: number; received: number; duplicates: number }[] = [];
try {
  lat = await latency(db.url);
  process.stdout.write(
    `latency: webhook p50 ${percentile(lat.hook, 50)} ms p99 ${percentile(lat.hook, 99)} ms; polling p50 ${percentile(lat.poll, 50)} ms\n`,
  );
  for (let round = 0; round < ROUNDS; round++) {
    const fresh = await createTestDatabase();
    try {
      bursts.push(await burst(fresh.url));
      process.stdout.write(`burst ${round + 1}: ${int(bursts.at(-1)?.perSecond ?? 0)} deliveries/s\n`);
    } finally {
      await fresh.dispose();
    }
  }
} finally {
  await db.dispose();
}

const rate = spread(bursts.map((b) => b.perSecond));
const p50 = percentile(lat.hook, 50);
const section: BenchSection = {
  id: "7-webhooks",
  title: "7. Webhooks: export finished → event received, and a burst of 1,000",
  command: "npm run bench:webhooks   (BENCH_EVENTS=100 BENCH_BURST=1000 BENCH_ROUNDS=3)",
  method:
    `PostgreSQL, an API process and 2 worker processes (polling once a minute: only NOTIFY helps), a receiver on this host. Latency: ${EVENTS} one-minute exports one at a time, ` +
    "finished_at → export.succeeded received, against a client polling the status every second on the same exports. " +
    `Burst: ${BURST} exports finish while no process delivers (1,000 events waiting at once), then 2 worker processes deliver them; every event must arrive; deliveries/s = events / (last − first arrival).`,
  table: {
    columns: ["measure", "p50", "p99", "max"],
    rows: [
      [
        "webhook: finished → received",
        `${p50} ms`,
        `${percentile(lat.hook, 99)} ms`,
        `${lat.hook.at(-1)} ms`,
      ],
      [
        "baseline: polling every 1 s, finished → seen",
        `${percentile(lat.poll, 50)} ms`,
        `${percentile(lat.poll, 99)} ms`,
        `${lat.poll.at(-1)} ms`,
      ],
      [
        `burst of ${BURST}: deliveries/s (min–max of ${ROUNDS})`,
        `${int(rate.median)}`,
        `${int(rate.min)}–${int(rate.max)}`,
        `received ${bursts.map((b) => b.received).join(", ")}; duplicates ${bursts.map((b) => b.duplicates).join(", ")}`,
      ],
    ],
  },
  floors: [
    { name: "finished → received p50", floor: "< 1 s", measured: `${p50} ms`, met: p50 < 1000 },
    {
      name: `${BURST} exports finishing at once: events delivered`,
      floor: `${BURST}, none lost`,
      measured: bursts.map((b) => b.received).join(", "),
      met: bursts.every((b) => b.received === BURST),
    },
  ],
};
report(section);
