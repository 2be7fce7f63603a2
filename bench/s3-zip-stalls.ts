/**
 * Where an S3 archive download loses time between its entries, measured inside one process so the
 * shared machine's noise hits every side alike: writeBody (http/file-body.ts) sends 8 ranged GETs of
 * 32 MiB parts from s3rver (an 8-entry archive's body), once with each part's GET made in its turn
 * and once with it made ahead (OPEN_AHEAD_BYTES, the product's way), against one ranged GET of a
 * 256 MiB object (one file of the same size). The stall is the time between one part's last byte
 * arriving from S3 and the next part's response being ready, summed over the download: with the
 * GET made in its turn, one round trip per entry. curl downloads each body to /dev/null, sides in
 * rotating order.
 * Run: node --import tsx bench/s3-zip-stalls.ts   (BENCH_ROUNDS=8 BENCH_PARTS=8 BENCH_PART_KB=32768;
 * BENCH_AHEAD_BYTES sets the "ahead" side's threshold, OPEN_AHEAD_BYTES unless told)
 */
import { execFile } from "node:child_process";
import { randomFillSync } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Readable } from "node:stream";
import { promisify } from "node:util";
import { type BodyPiece, ChunkPool, OPEN_AHEAD_BYTES, writeBody } from "../src/http/file-body.js";
import { S3ObjectStore } from "../src/object-store/s3.js";
import { startTestS3 } from "../test/helpers/s3.js";
import { int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
/** Bytes before a part's end at which the next part's GET is made on the "ahead" side. */
const AHEAD = Number(process.env.BENCH_AHEAD_BYTES ?? OPEN_AHEAD_BYTES);
const PARTS = Number(process.env.BENCH_PARTS ?? 8);
const PART_SIZE = Number(process.env.BENCH_PART_KB ?? 32 * 1024) * 1024;
const HEADER = Buffer.alloc(100);
const run = promisify(execFile);

type Side = "one" | "inTurn" | "ahead";
const SIDES: readonly Side[] = ["one", "inTurn", "ahead"];

const s3 = await startTestS3("exportd-bench-stalls");
const store = new S3ObjectStore(s3.settings);
const server = http.createServer();
const rounds: { mbs: Record<Side, number>; stallMs: Record<Side, number> }[] = [];
try {
  const put = async (key: string, size: number) => {
    const upload = await store.upload(key);
    for (let written = 0; written < size; ) {
      const block = Buffer.allocUnsafe(Math.min(4 * 2 ** 20, size - written));
      randomFillSync(block);
      written += block.length;
      if (!upload.stream.write(block)) await new Promise((r) => upload.stream.once("drain", r));
    }
    upload.stream.end();
    await upload.commit();
  };
  for (let i = 0; i < PARTS; i++) await put(`part-${i}`, PART_SIZE);
  await put("one", PARTS * PART_SIZE);

  /** Per GET of the download in progress: when its response was ready, when its body ended. */
  let gets: { ready: number; ended: number }[] = [];
  const open = async (key: string, length: number): Promise<Readable> => {
    const stream = await store.openRange(key, 0, length - 1);
    const get = { ready: performance.now(), ended: 0 };
    gets.push(get);
    stream.once("end", () => {
      get.ended = performance.now();
    });
    return stream;
  };
  const piecesOf = (side: Side): BodyPiece[] =>
    side === "one"
      ? [
          { kind: "bytes", data: HEADER },
          { kind: "stream", stream: () => open("one", PARTS * PART_SIZE), length: PARTS * PART_SIZE },
        ]
      : Array.from({ length: PARTS }, (_, i): BodyPiece[] => [
          { kind: "bytes", data: HEADER },
          { kind: "stream", stream: () => open(`part-${i}`, PART_SIZE), length: PART_SIZE },
        ]).flat();
  const pool = new ChunkPool(64 * 2 ** 20);
  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const side = (req.url as string).slice(1) as Side;
    const pieces = piecesOf(side);
    res.writeHead(200, { "content-length": String(PARTS * PART_SIZE + (side === "one" ? 1 : PARTS) * 100) });
    writeBody(res, pieces, pool, 30_000, side === "inTurn" ? -1 : AHEAD).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  for (let round = 1; round <= ROUNDS; round++) {
    const r = { mbs: { one: 0, inTurn: 0, ahead: 0 }, stallMs: { one: 0, inTurn: 0, ahead: 0 } };
    for (const side of SIDES.map((_, i) => SIDES[(i + round) % SIDES.length] as Side)) {
      gets = [];
      const { stdout } = await run("curl", [
        "-sf",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        `http://127.0.0.1:${port}/${side}`,
      ]);
      const [bytes, seconds] = stdout.split(" ").map(Number) as [number, number];
      r.mbs[side] = bytes / seconds / 1e6;
      for (let i = 1; i < gets.length; i++)
        r.stallMs[side] += Math.max(0, (gets[i]?.ready ?? 0) - (gets[i - 1]?.ended ?? 0));
    }
    rounds.push(r);
    process.stdout.write(
      `round ${round}: one ${int(r.mbs.one)} MB/s; ${PARTS} parts in turn ${int(r.mbs.inTurn)} MB/s ` +
        `(stall ${r.stallMs.inTurn.toFixed(1)} ms), ahead ${int(r.mbs.ahead)} MB/s (stall ${r.stallMs.ahead.toFixed(1)} ms)\n`,
    );
  }
} finally {
  server.close();
  await store.close();
  await s3.stop();
}

const ms = (values: number[]) => {
  const s = spread(values);
  return `${s.min.toFixed(1)}–${s.max.toFixed(1)} (median ${s.median.toFixed(1)})`;
};
const ratios = (side: Side) => rounds.map((r) => r.mbs[side] / r.mbs.one);
report({
  id: "7c-zip-s3-stalls",
  title: `7c. S3 archive body of ${PARTS} parts: the next part's GET made in its turn vs ahead, against one GET`,
  command: `node --import tsx bench/s3-zip-stalls.ts   (BENCH_ROUNDS=${ROUNDS} BENCH_PARTS=${PARTS} BENCH_PART_KB=${PART_SIZE / 1024} BENCH_AHEAD_BYTES=${AHEAD})`,
  method:
    `writeBody in this process with s3rver: ${PARTS} ranged GETs of ${PART_SIZE / 2 ** 20} MiB parts (each after a ` +
    "100-byte header, as an archive's entries), each GET made in its turn or ahead (OPEN_AHEAD_BYTES), against one " +
    "ranged GET of an object as long as the parts together. Stall: time between a part's body ending and the next " +
    `part's response being ready, summed per download. curl to /dev/null, sides in rotating order, ${ROUNDS} rounds.`,
  table: {
    columns: ["side", "MB/s", "vs one GET", "stall ms per download"],
    rows: SIDES.map((side) => [
      { one: "one GET", inTurn: `${PARTS} GETs, each in its turn`, ahead: `${PARTS} GETs, next made ahead` }[
        side
      ],
      (() => {
        const s = spread(rounds.map((r) => r.mbs[side]));
        return `${int(s.min)}–${int(s.max)} (median ${int(s.median)})`;
      })(),
      side === "one" ? "—" : ratioText(ratios(side)),
      ms(rounds.map((r) => r.stallMs[side])),
    ]),
  },
  floors: [],
});
