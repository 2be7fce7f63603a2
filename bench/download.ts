/**
 * Download of a 1 GiB part through a signed link: exportd's GET /files/<key> (signature check, then
 * the file) against nginx (sendfile) serving the same file from the same folder, both on 127.0.0.1,
 * fetched whole by curl in its own process; single stream, then several streams at once.
 * Run: npm run bench:download   (BENCH_ROUNDS=5, BENCH_STREAMS=4; BENCH_NODE_ARGS adds flags to the
 * server, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"; nginx is installed with apt-get when missing)
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { freePort } from "../test/helpers/net.js";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, tempDir, waitFor } from "../test/helpers/service.js";
import { startCluster, stopChild } from "./cluster.js";
import {
  curlMbs,
  curlSha256,
  downloadLink,
  mbsText,
  objectKeyOf,
  succeededExport,
  writeRandom,
} from "./lib-download.js";
import { int, peakRssMb, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const STREAMS = Number(process.env.BENCH_STREAMS ?? 4);
const SIZE = 2 ** 30;

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
  const id = await succeededExport(http, {
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
    format: "csv",
    compression: "gzip",
  });
  const link = await downloadLink(http, id);
  filename = link.filename;
  const fileUrl = new URL(link.url);
  const objectKey = objectKeyOf(link.url);
  const objectsDir = path.join(cluster.dataDir, "objects");

  process.stdout.write(`writing 1 GiB of random bytes to objects/${objectKey}\n`);
  const { sha256 } = writeRandom(path.join(objectsDir, objectKey), SIZE);
  const started = await startNginx(nginxDir, objectsDir, fileUrl.pathname);
  nginx = started.child;
  const urls = { exportd: link.url, nginx: `${started.url}${fileUrl.pathname}${fileUrl.search}` };

  // Once, the whole download compared with the file (this also warms the page cache and the JIT).
  const got = await curlSha256(urls.exportd);
  if (got !== sha256) throw new Error(`exportd served different bytes: sha256 ${got}, file ${sha256}`);
  await curlMbs(urls.nginx, SIZE, 1);

  for (const c of cases) {
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate who goes first, so neither always inherits the other's aftermath.
      const order = round % 2 ? (["nginx", "exportd"] as const) : (["exportd", "nginx"] as const);
      const r: Round = { nginx: 0, exportd: 0 };
      for (const side of order) r[side] = await curlMbs(urls[side], SIZE, c.streams);
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
        mbsText(c.rounds.map((r) => r.nginx)),
        mbsText(c.rounds.map((r) => r.exportd)),
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
