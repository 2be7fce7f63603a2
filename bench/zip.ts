/**
 * Zip archive download against one file of the same size, both through exportd's signed links on
 * the same server: an export with `"archive": "zip"` whose 8 parts are replaced by 128 MiB of random
 * bytes each (their sizes, SHA-256 and CRC-32 written into the metadata store to match), and a
 * one-part export whose part is replaced by random bytes of exactly the archive's length. curl in
 * its own process downloads each whole to /dev/null, alternating sides; single stream, then several
 * at once. The server's resident memory is sampled during each side's downloads (growth over the
 * idle server, per download in flight).
 * Run: npm run bench:zip   (BENCH_ROUNDS=5, BENCH_STREAMS=4)
 */
import { execFile, spawn } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { crc32 } from "../src/domain/crc32.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, waitFor } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import { int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 4);
const PARTS = 8;
const PART_SIZE = 128 * 2 ** 20;
const run = promisify(execFile);

/** Writes `size` random bytes to `file`; returns their SHA-256 and CRC-32. */
function writeRandom(file: string, size: number): { sha256: string; crc32: number } {
  const hash = createHash("sha256");
  let crc = 0;
  const block = Buffer.allocUnsafe(8 * 2 ** 20);
  const fd = fs.openSync(`${file}.bench`, "w");
  try {
    for (let written = 0; written < size; ) {
      const n = Math.min(block.length, size - written);
      randomFillSync(block, 0, n);
      hash.update(block.subarray(0, n));
      crc = crc32(block.subarray(0, n), crc);
      fs.writeSync(fd, block, 0, n);
      written += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(`${file}.bench`, file);
  return { sha256: hash.digest("hex"), crc32: crc };
}

/** VmRSS of a process in MB, now. */
function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

/** `streams` curls at once; MB/s of all together (curl's own timing) and the peak RSS meanwhile. */
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

const cluster = await startCluster({ workers: 0 });
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
  // 1,800 demo events in the hour: 8 parts of 225 rows.
  const zipped = await http.create({ dataset: "events", ...range, archive: "zip", part_max_rows: 225 });
  const single = await http.create({ dataset: "events", ...range });
  for (const id of [zipped.body.id, single.body.id]) {
    await waitFor(
      () => http.get(id),
      (e) => e.status === "succeeded",
    );
  }
  const objects = path.join(cluster.dataDir, "objects");
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
      process.stdout.write(`writing 128 MiB of random bytes to part ${p.idx}\n`);
      const written = writeRandom(path.join(objects, p.object_key), PART_SIZE);
      update.run(PART_SIZE, written.sha256, written.crc32, zipped.body.id, p.idx);
    }
  } finally {
    db.close();
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
  const fileKey = decodeURIComponent(new URL(fileLink.url).pathname.slice("/files/".length));
  process.stdout.write(`writing ${int(archiveSize)} random bytes to the single part\n`);
  const fileSha = writeRandom(path.join(objects, fileKey), archiveSize).sha256;
  if ((await sha256Of(fileLink.url)) !== fileSha) throw new Error("the single file came back different");
  // Warm-up, and the archive checked by unzip once.
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
        `${c.label}, round ${round}: file ${int(r.file)} MB/s, zip ${int(r.zip)} MB/s, ${(r.zip / r.file).toFixed(2)}×; ` +
          `peak RSS file ${int(r.fileRss)} MB, zip ${int(r.zipRss)} MB\n`,
      );
    }
  }
} finally {
  await cluster.stop();
}

const ratios = (rounds: Round[]) => rounds.map((r) => r.zip / r.file);
const mbs = (values: number[]) => {
  const s = spread(values);
  return `${int(s.min)}–${int(s.max)} (median ${int(s.median)})`;
};
/** Peak RSS growth over the idle server per download in flight, MB, as min–max. */
const perDownload = (values: number[], streams: number) => {
  const s = spread(values.map((v) => Math.max(0, v - idleRss) / streams));
  return `${s.min.toFixed(1)}–${s.max.toFixed(1)}`;
};
report({
  id: "7-zip",
  title: "7. Zip archive download vs one file of the same size",
  command: "npm run bench:zip   (BENCH_ROUNDS=5 BENCH_STREAMS=4)",
  method:
    `exportd (local storage, one process): an export with "archive": "zip" whose ${PARTS} parts are replaced by ` +
    `128 MiB of random bytes each (sizes, SHA-256 and CRC-32 updated in the metadata store), served as one zip ` +
    "assembled from the parts; anchor: a one-part export whose part is replaced by random bytes of exactly the " +
    "archive's length, through the same /files route and signed-link check. curl downloads each whole to " +
    `/dev/null, alternating sides, ${ROUNDS} rounds, 1 stream then ${STREAMS} at once; files in the page cache. ` +
    "RSS: the server's VmRSS sampled every 20 ms during each side's downloads, growth over the idle server, per download in flight.",
  table: {
    columns: [
      "case",
      "round",
      "file MB/s",
      "zip MB/s",
      "zip / file",
      "RSS/download file MB",
      "RSS/download zip MB",
    ],
    rows: cases.flatMap((c) => [
      ...c.rounds.map((r, i) => [
        c.label,
        String(i + 1),
        int(r.file),
        int(r.zip),
        `${(r.zip / r.file).toFixed(2)}×`,
        perDownload([r.fileRss], c.streams),
        perDownload([r.zipRss], c.streams),
      ]),
      [
        c.label,
        "all",
        mbs(c.rounds.map((r) => r.file)),
        mbs(c.rounds.map((r) => r.zip)),
        ratioText(ratios(c.rounds)),
        perDownload(
          c.rounds.map((r) => r.fileRss),
          c.streams,
        ),
        perDownload(
          c.rounds.map((r) => r.zipRss),
          c.streams,
        ),
      ],
    ]),
  },
  floors: [
    ...cases.map((c) => ({
      name: `zip download MB/s vs one file, ${c.label}`,
      floor: "≥ 0.7×",
      measured: ratioText(ratios(c.rounds)),
      met: spread(ratios(c.rounds)).median >= 0.7,
    })),
    ...cases.map((c) => {
      const file = spread(c.rounds.map((r) => r.fileRss)).max;
      const zip = spread(c.rounds.map((r) => r.zipRss)).max;
      return {
        name: `peak RSS during zip downloads vs file downloads, ${c.label}`,
        floor: "no more per download (within 8 MB of noise)",
        measured: `zip ${int(zip)} MB, file ${int(file)} MB (idle ${int(idleRss)} MB)`,
        met: zip <= file + 8,
      };
    }),
  ],
  notes: [
    `Archive: ${int(archiveSize)} bytes (manifest.json and ${PARTS} stored entries); every download is checked for ` +
      "status 200 and its full length; unzip -t checks one archive download, and the single file's SHA-256 is compared once.",
  ],
});
