/**
 * Download of a 1 GiB part through a signed link: exportd's GET /files/<key> (signature check, then
 * the file) against nginx (sendfile) serving the same file from the same folder, both on 127.0.0.1,
 * fetched whole by curl in its own process; single stream, then several streams at once.
 * Run: npm run bench:download   (BENCH_ROUNDS=5, BENCH_STREAMS=4; BENCH_NODE_ARGS adds flags to the
 * server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"; nginx is installed with apt-get when missing)
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { createHash, randomFillSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "../test/helpers/net.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../test/helpers/service.js";
import { startCluster, stopChild } from "./cluster.js";
import { int, peakRssMb, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 4);
const SIZE = 2 ** 30;
const run = promisify(execFile);

/** nginx from Debian's packages when it is not installed (the bench machines run as root). */
function ensureNginx(): void {
  if (!spawnSync("nginx", ["-v"]).error) return;
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "--no-install-recommends", "nginx"], { stdio: "inherit" }).status;
  if (install() !== 0) {
    // A fresh image has no package lists yet.
    spawnSync("apt-get", ["update"], { stdio: "inherit" });
    if (install() !== 0) throw new Error("could not install nginx with apt-get");
  }
}

/**
 * Replaces the part's file with `SIZE` bytes of random data, written in place of what the worker
 * wrote (the link signs the key and the download name, not the content). Returns its sha256.
 */
function writePart(file: string): string {
  const hash = createHash("sha256");
  const block = Buffer.allocUnsafe(8 * 2 ** 20);
  const temp = `${file}.bench`;
  const fd = fs.openSync(temp, "w");
  try {
    for (let written = 0; written < SIZE; written += block.length) {
      randomFillSync(block);
      hash.update(block);
      fs.writeSync(fd, block);
    }
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  return hash.digest("hex");
}

/** nginx as a child process with its own prefix, config, pid and logs; resolves once it serves the file. */
async function startNginx(dir: string, objectsDir: string, probePath: string) {
  const port = await freePort();
  const conf = path.join(dir, "nginx.conf");
  fs.writeFileSync(
    conf,
    `daemon off;
# One worker, as exportd serves from one process. "user" only matters as root: the temporary
# folders are 0700, so workers running as nobody could not read the file.
user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location /files/ { alias ${objectsDir}/; }
  }
}
`,
  );
  const child = spawn("nginx", ["-p", dir, "-c", conf, "-e", path.join(dir, "error.log")], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}`);
      return fetch(`${url}${probePath}`, { method: "HEAD" }).then(
        (r) => r.status,
        () => 0,
      );
    },
    (status) => status === 200,
    15_000,
  );
  return { url, child };
}

/**
 * `streams` curl processes at once, each downloading the whole file to /dev/null. MB/s (10^6
 * bytes) of all of them together, timed by curl itself (connect to last byte).
 */
async function download(url: string, streams: number): Promise<number> {
  const results = await Promise.all(
    Array.from({ length: streams }, () =>
      run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}", url]),
    ),
  );
  let bytes = 0;
  let seconds = 0;
  for (const { stdout } of results) {
    const [status, size, time] = stdout.trim().split(" ").map(Number) as [number, number, number];
    if (status !== 200 || size !== SIZE)
      throw new Error(`${url}: status ${status}, ${size} of ${SIZE} bytes`);
    bytes += size;
    seconds = Math.max(seconds, time);
  }
  return bytes / seconds / 1e6;
}

/** The sha256 of a download made by curl (the hashing happens here, never in the server). */
async function downloadedSha256(url: string): Promise<string> {
  const curl = spawn("curl", ["-sf", url], { stdio: ["ignore", "pipe", "inherit"] });
  const hash = createHash("sha256");
  for await (const chunk of curl.stdout) hash.update(chunk as Buffer);
  const code = await new Promise<number | null>((resolve) => {
    if (curl.exitCode !== null) resolve(curl.exitCode);
    else curl.once("exit", resolve);
  });
  if (code !== 0) throw new Error(`curl exited with ${code}`);
  return hash.digest("hex");
}

ensureNginx();
const nginxDir = tempDir("exportd-bench-nginx-");
const cluster = await startCluster({ workers: 0 });
let nginx: ChildProcess | null = null;

interface Round {
  nginx: number;
  exportd: number;
}
const cases = [
  { label: "1 stream", streams: 1, rounds: [] as Round[] },
  { label: `${STREAMS} streams`, streams: STREAMS, rounds: [] as Round[] },
];
let rssMb = 0;
let filename = "";
try {
  // A real export, so the link is the one exportd hands out (download route, redirect=false).
  const http = client(cluster.url, cluster.key);
  const to = pastMidnight();
  const created = await http.create({
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
    format: "csv",
    compression: "gzip",
  });
  await waitFor(
    () => http.get(created.body.id),
    (e) => e.status === "succeeded",
  );
  const linkRes = await http.raw(`/v1/exports/${created.body.id}/download?redirect=false`);
  const link = (await linkRes.json()) as { url: string; filename: string };
  if (linkRes.status !== 200) throw new Error(`download link: ${linkRes.status} ${JSON.stringify(link)}`);
  filename = link.filename;
  const fileUrl = new URL(link.url);
  const objectKey = decodeURIComponent(fileUrl.pathname.slice("/files/".length));
  const objectsDir = path.join(cluster.dataDir, "objects");

  process.stdout.write(`writing 1 GiB of random bytes to objects/${objectKey}\n`);
  const sha256 = writePart(path.join(objectsDir, objectKey));
  const started = await startNginx(nginxDir, objectsDir, fileUrl.pathname);
  nginx = started.child;
  const urls = { exportd: link.url, nginx: `${started.url}${fileUrl.pathname}${fileUrl.search}` };

  // Once, the whole download compared with the file (this also warms the page cache and the JIT).
  const got = await downloadedSha256(urls.exportd);
  if (got !== sha256) throw new Error(`exportd served different bytes: sha256 ${got}, file ${sha256}`);
  await download(urls.nginx, 1);

  for (const c of cases) {
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate who goes first, so neither always inherits the other's aftermath.
      const order = round % 2 ? (["nginx", "exportd"] as const) : (["exportd", "nginx"] as const);
      const r: Round = { nginx: 0, exportd: 0 };
      for (const side of order) r[side] = await download(urls[side], c.streams);
      c.rounds.push(r);
      process.stdout.write(
        `${c.label}, round ${round}: nginx ${int(r.nginx)} MB/s, exportd ${int(r.exportd)} MB/s, ` +
          `${(r.exportd / r.nginx).toFixed(2)}×\n`,
      );
    }
  }
  if (cluster.api.child.pid) rssMb = peakRssMb(cluster.api.child.pid);
} finally {
  // SIGQUIT: nginx's graceful stop.
  if (nginx) await stopChild(nginx, "SIGQUIT");
  await cluster.stop();
  fs.rmSync(nginxDir, { recursive: true, force: true });
}

const ratios = (rounds: Round[]) => rounds.map((r) => r.exportd / r.nginx);
const mbs = (values: number[]) => {
  const s = spread(values);
  return `${int(s.min)}–${int(s.max)} (median ${int(s.median)})`;
};
report({
  id: "4-download",
  title: "4. Download of a 1 GiB part through a signed link",
  command: "npm run bench:download   (BENCH_ROUNDS=5 BENCH_STREAMS=4)",
  method:
    "exportd: the built server (local storage); a small real gzip export is made through the API and " +
    "its signed link taken from GET /v1/exports/{id}/download?redirect=false, then the part's file is " +
    "replaced by 1 GiB of random bytes (what gzip output looks like; the signature covers the key and " +
    "the download name, not the content). Anchor: nginx (1 worker, sendfile on, access log off) serving " +
    "the same file from the same folder. curl in its own process downloads the whole file to /dev/null, " +
    `alternating sides, ${ROUNDS} rounds, single stream and then ${STREAMS} streams at once; the file ` +
    "stays in the page cache, so this is the servers' cost, not the disk's. MB/s = 10^6 bytes per second.",
  table: {
    columns: ["case", "round", "nginx MB/s", "exportd MB/s", "exportd / nginx"],
    rows: cases.flatMap((c) => [
      ...c.rounds.map((r, i) => [
        c.label,
        String(i + 1),
        int(r.nginx),
        int(r.exportd),
        `${(r.exportd / r.nginx).toFixed(2)}×`,
      ]),
      [
        c.label,
        "all",
        mbs(c.rounds.map((r) => r.nginx)),
        mbs(c.rounds.map((r) => r.exportd)),
        ratioText(ratios(c.rounds)),
      ],
    ]),
  },
  floors: cases.map((c) => ({
    name: `download MB/s vs nginx, ${c.label}`,
    floor: "≥ 0.7×",
    measured: ratioText(ratios(c.rounds)),
    met: spread(ratios(c.rounds)).median >= 0.7,
  })),
  notes: [
    `Each download is checked for status 200 and the full ${int(SIZE)} bytes; one exportd download's ` +
      "sha256 is compared with the file's.",
    `exportd's peak RSS over the run: ${int(rssMb)} MB. Download name: ${filename}.`,
    "Loopback only: exportd copies each chunk into fresh socket buffers, still in the CPU cache when " +
      "curl reads them, while nginx's sendfile hands curl the page-cache pages themselves; over a real " +
      "network link both are bounded by the link long before either figure here.",
  ],
});
