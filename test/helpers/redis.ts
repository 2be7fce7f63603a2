/**
 * A Redis for tests: EXPORTD_TEST_REDIS_URL when set (CI points it at the machine's Redis),
 * otherwise a throwaway redis-server started here on a free port, keeping nothing on disk.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Redis } from "ioredis";
import { freePort } from "./net.js";

export interface TestRedis {
  url: string;
  stop(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  const given = process.env.EXPORTD_TEST_REDIS_URL;
  if (given) return { url: given, stop: async () => undefined };
  const port = await freePort();
  let child: ChildProcess;
  try {
    child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      {
        stdio: "ignore",
      },
    );
  } catch (err) {
    throw new Error(`Set EXPORTD_TEST_REDIS_URL or install redis-server: ${String(err)}`);
  }
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => undefined); // refused until the server listens; the loop retries
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      break;
    } catch {
      probe.disconnect();
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error("redis-server did not start; set EXPORTD_TEST_REDIS_URL or install redis-server");
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}
