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
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight } from "../test/helpers/service.js";
import { startCluster } from "./cluster.js";
import {
  curlMbsSampled,
  curlSha256,
  downloadLink,
  mbsText,
  objectKeyOf,
  rssMb,
  succeededExport,
  writeRandom,
} from "./lib-download.js";
import { int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 4);
const PARTS = 8;
const PART_SIZE = 128 * 2 ** 20;
const run = promisify(execFile);

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
  const [zipped, single] = await Promise.all([
    succeededExport(http, { dataset: "events", ...range, archive: "zip", part_max_rows: 225 }),
    succeededExport(http, { dataset: "events", ...range }),
  ]);
  const objects = path.join(cluster.dataDir, "objects");
  const db = new Database(path.join(cluster.dataDir, "exportd.sqlite"));
  try {
    const parts = db
      .prepare("SELECT idx, object_key FROM export_parts WHERE export_id = ? ORDER BY idx")
      .all(zipped) as { idx: number; object_key: string }[];
    if (parts.length !== PARTS) throw new Error(`expected ${PARTS} parts, got ${parts.length}`);
    const update = db.prepare(
      "UPDATE export_parts SET bytes = ?, sha256 = ?, crc32 = ? WHERE export_id = ? AND idx = ?",
    );
    for (const p of parts) {
      process.stdout.write(`writing 128 MiB of random bytes to part ${p.idx}\n`);
      const written = writeRandom(path.join(objects, p.object_key), PART_SIZE);
      update.run(PART_SIZE, written.sha256, written.crc32, zipped, p.idx);
    }
  } finally {
    db.close();
  }
  const zipLink = await downloadLink(http, zipped, "&archive=zip");
  const head = await fetch(zipLink.url, { method: "HEAD" });
  archiveSize = Number(head.headers.get("content-length"));
  const fileLink = await downloadLink(http, single);
  const fileKey = objectKeyOf(fileLink.url);
  process.stdout.write(`writing ${int(archiveSize)} random bytes to the single part\n`);
  const fileSha = writeRandom(path.join(objects, fileKey), archiveSize).sha256;
  if ((await curlSha256(fileLink.url)) !== fileSha) throw new Error("the single file came back different");
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
        const got = await curlMbsSampled(urls[side], archiveSize, c.streams, pid);
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
        mbsText(c.rounds.map((r) => r.file)),
        mbsText(c.rounds.map((r) => r.zip)),
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
