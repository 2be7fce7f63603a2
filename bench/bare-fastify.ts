/** The anchor for bench/api.ts: a bare Fastify route answering a small JSON object, nothing else. */
import Fastify from "fastify";

const app = Fastify({ logger: false });
app.get("/v1/exports/:id", async (request) => ({
  id: (request.params as { id: string }).id,
  status: "succeeded",
}));
await app.listen({ port: Number(process.env.PORT), host: "127.0.0.1" });
process.stdout.write("ready\n");
