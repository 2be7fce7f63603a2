/**
 * What a sign-in token (JWT) costs against an API key on the status read: GET /v1/exports/{id} of a
 * succeeded export at 50 connections (autocannon, in its own process), authenticated with the
 * tenant's key and with an RS256 token of the same tenant, alternating, on the same server in the
 * same run. A second server has the verified-token cache off (EXPORTD_JWT_CACHE_SECONDS=0), so
 * every request verifies the RS256 signature and the claims: what the cache saves.
 * Run: npm run bench:api:jwt   (BENCH_ROUNDS=3, BENCH_SECONDS=10 by default)
 */
import { exportSPKI, generateKeyPair, SignJWT } from "jose";
import { client } from "../test/helpers/server-process.js";
import { pastMidnight, waitFor } from "../test/helpers/service.js";
import { type Cluster, startCluster } from "./cluster.js";
import { type LoadResult, load, loadLine } from "./load.js";
import { int, ratioText, report, spread } from "./report.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
const pem = await exportSPKI(publicKey);
const token = await new SignJWT({ tenant: "bench", scope: "exports:read exports:download" })
  .setProtectedHeader({ alg: "RS256" })
  .setSubject("bench-user")
  .setIssuedAt()
  .setExpirationTime("2h")
  .sign(privateKey);

interface Server {
  label: string;
  cluster: Cluster;
  id: string;
}

/** A server with one succeeded export, accepting RS256 tokens signed by the key above. */
async function prepare(label: string, env: Record<string, string>): Promise<Server> {
  const cluster = await startCluster({ workers: 0, env: { EXPORTD_JWT_PUBLIC_KEY: pem, ...env } });
  const http = client(cluster.url, cluster.key);
  const to = pastMidnight();
  const created = await http.create({
    dataset: "events",
    from: new Date(to - 3_600_000).toISOString(),
    to: new Date(to).toISOString(),
  });
  await waitFor(
    () => http.get(created.body.id),
    (e) => e.status === "succeeded",
  );
  return { label, cluster, id: created.body.id };
}

const servers = [
  await prepare("verified tokens cached (default, 30 s)", {}),
  await prepare("no token cache (RS256 verified every request)", { EXPORTD_JWT_CACHE_SECONDS: "0" }),
];

interface Round {
  key: LoadResult;
  jwt: LoadResult;
}
const shape = { connections: 50, seconds: SECONDS };
const rounds = new Map<Server, Round[]>(servers.map((s) => [s, []]));
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const s of servers) {
      const url = `${s.cluster.url}/v1/exports/${s.id}`;
      // Which side goes first alternates by round.
      const sides = round % 2 ? (["key", "jwt"] as const) : (["jwt", "key"] as const);
      const result: Partial<Round> = {};
      for (const side of sides) {
        const credential = side === "key" ? s.cluster.key : token;
        result[side] = load({ url, headers: { authorization: `Bearer ${credential}` }, ...shape });
      }
      const r = result as Round;
      for (const side of [r.key, r.jwt])
        if (side.non2xx > 0 || side.errors > 0) throw new Error(`errors answered: ${JSON.stringify(side)}`);
      rounds.get(s)?.push(r);
      process.stdout.write(
        `round ${round}, ${s.label}\n  ${loadLine("API key", r.key)}\n  ${loadLine("JWT", r.jwt)}\n`,
      );
    }
  }
} finally {
  await Promise.all(servers.map((s) => s.cluster.stop()));
}

const rates = (results: LoadResult[]) => {
  const rate = spread(results.map((r) => r.requests.average));
  const p50 = spread(results.map((r) => r.latency.p50));
  const p99 = spread(results.map((r) => r.latency.p99));
  return [`${int(rate.min)}–${int(rate.max)}`, `${p50.min}–${p50.max}`, `${p99.min}–${p99.max}`];
};
const ratiosOf = (s: Server) =>
  (rounds.get(s) ?? []).map((r) => r.jwt.requests.average / r.key.requests.average);
report({
  id: "3b-api-jwt",
  title: "3b. API: GET /v1/exports/{id} with a sign-in token (JWT) vs an API key",
  command: "npm run bench:api:jwt   (BENCH_ROUNDS=3 BENCH_SECONDS=10)",
  method:
    `autocannon in its own process, 50 connections, ${SECONDS} s per side per round, which side goes ` +
    "first alternating; both sides read the same succeeded export on the same built server (SQLite), one " +
    "with the tenant's API key, one with an RS256 token of the same tenant (PEM key configured). The " +
    "second server has the verified-token cache off, so each request verifies the signature and claims.",
  table: {
    columns: ["server", "side", "req/s (min–max)", "p50 ms", "p99 ms", "JWT / key"],
    rows: servers.flatMap((s) => {
      const rs = rounds.get(s) ?? [];
      return [
        [s.label, "API key", ...rates(rs.map((r) => r.key)), ""],
        [s.label, "JWT (RS256)", ...rates(rs.map((r) => r.jwt)), ratioText(ratiosOf(s))],
      ];
    }),
  },
  floors: [
    {
      name: "status read req/s, JWT vs API key (token cache on)",
      floor: "≥ 0.9× (aim)",
      measured: ratioText(ratiosOf(servers[0] as Server)),
      met: spread(ratiosOf(servers[0] as Server)).median >= 0.9,
    },
  ],
});
