/**
 * The anchor for bench/api.ts: a bare Fastify route answering, for each export id, the JSON
 * document exportd answers for it (read from $BODY_FILE), so both sides write the same bytes and
 * the difference is exportd's own work: authentication, the database, link signing, the schema.
 */
import fs from "node:fs";
import Fastify from "fastify";

const documents = JSON.parse(fs.readFileSync(process.env.BODY_FILE as string, "utf8")) as Record<
  string,
  unknown
>;
const app = Fastify({ logger: false });
app.get("/v1/exports/:id", async (request) => documents[(request.params as { id: string }).id]);
await app.listen({ port: Number(process.env.PORT), host: "127.0.0.1" });
process.stdout.write("ready\n");
// Exit normally on SIGTERM, so `--cpu-prof` writes its profile.
process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
