/**
 * Zip archive download with the S3 object store against one part of the same size downloaded from
 * the bucket through its presigned link: the archive goes S3 → exportd (one ranged GET per part) →
 * client, the anchor S3 → client. s3rver (the S3-compatible server the tests use) runs in this
 * process; exportd is the built CLI in its own process. An export with `"archive": "zip"` has its
 * 8 parts replaced in the bucket by random bytes (sizes, SHA-256 and CRC-32 written into the
 * metadata store to match); a one-part export's part is replaced by random bytes of exactly the
 * archive's length. curl downloads each whole to /dev/null, alternating sides; 1 stream, then
 * several at once. exportd's resident memory is sampled during each side's downloads.
 * Run: npm run bench:zip:s3   (BENCH_ROUNDS=3, BENCH_STREAMS=4, BENCH_PART_MB=32)
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { crc32 } from "../src/domain/crc32.js";
import { S3ObjectStore } from "../src/object-store/s3.js";
import { startTestS3 } from "../test/helpers/s3.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, waitFor } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import { int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 4);
const PARTS = 8;
const PART_SIZE = Number(process.env.BENCH_PART_MB ?? 32) * 2 ** 20;
const run = promisify(execFile);

/** Uploads `size` random bytes under `key`; returns their SHA-256 and CRC-32. */
async function putRandom(store: S3ObjectStore, key: string, size: number) {
  const hash = createHash("sha256");
  let crc = 0;
  const upload = await store.upload(key);
  for (let written = 0; written < size; ) {
    const block = Buffer.allocUnsafe(Math.min(4 * 2 ** 20, size - written));
    randomFillSync(block);
    hash.update(block);
    crc = crc32(block, crc);
    written += block.length;
    if (!upload.stream.write(block)) await new Promise((r) => upload.stream.once("drain", r));
  }
  upload.stream.end();
  await upload.commit();
  return { sha256: hash.digest("hex"), crc32: crc };
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

async function download(url: string, size: number, streams: number, pid: number) {
  let peak = rssMb(pid);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, 20);
  try {
    const results = await Promise.all(
      Array.from({ length: streams }, () =>
        run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url]),
      ),
    );
    let bytes = 0;
    let seconds = 0;
    for (const { stdout } of results) {
      const [status, got, time] = stdout.trim().split(" ").map(Number) as [number, number, number];
      if (status !== 200 || got !== size)
        throw new Error(`${url}: status ${status}, ${got} of ${size} bytes`);
      bytes += got;
      seconds = Math.max(seconds, time);
    }
    return { mbs: bytes / seconds / 1e6, peakRss: peak };
  } finally {
    clearInterval(sampler);
  }
}

async function sha256Of(url: string): Promise<string> {
  const curl = spawn("curl", ["-sf", url], { stdio: ["ignore", "pipe", "inherit"] });
  const hash = createHash("sha256");
  for await (const chunk of curl.stdout) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

const s3 = await startTestS3("exportd-bench");
const store = new S3ObjectStore(s3.settings);
const cluster = await startCluster({ workers: 0, env: s3.env });
interface Round {
  file: number;
  zip: number;
  fileRss: number;
  zipRss: number;
}
const cases = [
  { label: "1 stream", streams: 1, rounds: [] as Round[] },
  { label: `${STREAMS} streams`, streams: STREAMS, rounds: [] as Round[] },
];
let idleRss = 0;
let archiveSize = 0;
try {
  const http = client(cluster.url, cluster.key);
  const to = pastMidnight();
  const range = { from: new Date(to - 3_600_000).toISOString(), to: new Date(to).toISOString() };
  const zipped = await http.create({ dataset: "events", ...range, archive: "zip", part_max_rows: 225 });
  const single = await http.create({ dataset: "events", ...range });
  for (const id of [zipped.body.id, single.body.id]) {
    await waitFor(
      () => http.get(id),
      (e) => e.status === "succeeded",
    );
  }
  const db = new Database(path.join(cluster.dataDir, "exportd.sqlite"));
  try {
    const parts = db
      .prepare("SELECT idx, object_key FROM export_parts WHERE export_id = ? ORDER BY idx")
      .all(zipped.body.id) as { idx: number; object_key: string }[];
    if (parts.length !== PARTS) throw new Error(`expected ${PARTS} parts, got ${parts.length}`);
    const update = db.prepare(
      "UPDATE export_parts SET bytes = ?, sha256 = ?, crc32 = ? WHERE export_id = ? AND idx = ?",
    );
    for (const p of parts) {
      process.stdout.write(`uploading ${PART_SIZE / 2 ** 20} MiB of random bytes to part ${p.idx}\n`);
      const written = await putRandom(store, p.object_key, PART_SIZE);
      update.run(PART_SIZE, written.sha256, written.crc32, zipped.body.id, p.idx);
    }
    const zipLink = (await (
      await http.raw(`/v1/exports/${zipped.body.id}/download?archive=zip&redirect=false`)
    ).json()) as { url: string };
    const head = await fetch(zipLink.url, { method: "HEAD" });
    archiveSize = Number(head.headers.get("content-length"));
    const fileLink = (await (
      await http.raw(`/v1/exports/${single.body.id}/download?redirect=false`)
    ).json()) as {
      url: string;
    };
    const fileKey = (
      db.prepare("SELECT object_key FROM export_parts WHERE export_id = ?").get(single.body.id) as {
        object_key: string;
      }
    ).object_key;
    process.stdout.write(`uploading ${int(archiveSize)} random bytes to the single part\n`);
    const fileSha = (await putRandom(store, fileKey, archiveSize)).sha256;
    if ((await sha256Of(fileLink.url)) !== fileSha) throw new Error("the single file came back different");
    const zipFile = path.join(cluster.dataDir, "bench.zip");
    await run("curl", ["-sf", "-o", zipFile, zipLink.url]);
    await run("unzip", ["-tq", zipFile]);
    fs.rmSync(zipFile);
    const pid = cluster.api.child.pid as number;
    idleRss = rssMb(pid);
    const urls = { file: fileLink.url, zip: zipLink.url };
    for (const c of cases) {
      for (let round = 1; round <= ROUNDS; round++) {
        const order = round % 2 ? (["file", "zip"] as const) : (["zip", "file"] as const);
        const r: Round = { file: 0, zip: 0, fileRss: 0, zipRss: 0 };
        for (const side of order) {
          const got = await download(urls[side], archiveSize, c.streams, pid);
          r[side] = got.mbs;
          r[side === "file" ? "fileRss" : "zipRss"] = got.peakRss;
        }
        c.rounds.push(r);
        process.stdout.write(
          `${c.label}, round ${round}: bucket ${int(r.file)} MB/s, zip ${int(r.zip)} MB/s, ${(r.zip / r.file).toFixed(2)}×; ` +
            `exportd peak RSS during bucket ${int(r.fileRss)} MB, zip ${int(r.zipRss)} MB\n`,
        );
      }
    }
  } finally {
    db.close();
  }
} finally {
  await cluster.stop();
  await store.close();
  await s3.stop();
}

const ratios = (rounds: Round[]) => rounds.map((r) => r.zip / r.file);
const mbs = (values: number[]) => {
  const s = spread(values);
  return `${int(s.min)}–${int(s.max)} (median ${int(s.median)})`;
};
/** exportd's peak RSS growth over idle per download in flight, MB, min–max. */
const perDownload = (values: number[], streams: number) => {
  const s = spread(values.map((v) => Math.max(0, v - idleRss) / streams));
  return `${s.min.toFixed(1)}–${s.max.toFixed(1)}`;
};
report({
  id: "7b-zip-s3",
  title: "7b. Zip archive download with S3 storage vs one part from the bucket",
  command: "npm run bench:zip:s3   (BENCH_ROUNDS=3 BENCH_STREAMS=4 BENCH_PART_MB=32)",
  method:
    `exportd (S3 storage on s3rver in the bench process, one exportd process): an export with "archive": "zip" ` +
    `whose ${PARTS} parts are replaced in the bucket by ${PART_SIZE / 2 ** 20} MiB of random bytes each, served ` +
    "by exportd from one ranged GET per part; anchor: a one-part export whose part is replaced by random bytes of " +
    "the archive's length, downloaded straight from the bucket through its presigned link. curl downloads each " +
    `whole to /dev/null, alternating sides, ${ROUNDS} rounds, 1 stream then ${STREAMS} at once. RSS: exportd's ` +
    "VmRSS sampled every 20 ms (during the anchor exportd is idle), growth over idle per download in flight.",
  table: {
    columns: ["case", "round", "bucket MB/s", "zip MB/s", "zip / bucket", "RSS/download zip MB"],
    rows: cases.flatMap((c) => [
      ...c.rounds.map((r, i) => [
        c.label,
        String(i + 1),
        int(r.file),
        int(r.zip),
        `${(r.zip / r.file).toFixed(2)}×`,
        perDownload([r.zipRss], c.streams),
      ]),
      [
        c.label,
        "all",
        mbs(c.rounds.map((r) => r.file)),
        mbs(c.rounds.map((r) => r.zip)),
        ratioText(ratios(c.rounds)),
        perDownload(
          c.rounds.map((r) => r.zipRss),
          c.streams,
        ),
      ],
    ]),
  },
  floors: cases.map((c) => ({
    name: `S3 zip download MB/s vs one part from the bucket, ${c.label}`,
    floor: "≥ 0.7× (issue 16's floor, with S3)",
    measured: ratioText(ratios(c.rounds)),
    met: spread(ratios(c.rounds)).median >= 0.7,
  })),
  notes: [
    `Archive: ${int(archiveSize)} bytes (manifest.json and ${PARTS} stored entries); every download is checked for ` +
      "status 200 and its full length; unzip -t checks one archive download, the single part's SHA-256 is compared once.",
  ],
});
