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

/**
 * A redis-server of the test's own on `port` (fault tests kill, pause and restart it on the same
 * port), keeping nothing on disk. Resolves once it answers PING; throws when it does not start
 * within 10 s.
 */
export async function spawnRedisServer(port: number): Promise<ChildProcess> {
  let child: ChildProcess;
  try {
    child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
  } catch (err) {
    throw new Error(`Set EXPORTD_TEST_REDIS_URL or install redis-server: ${String(err)}`);
  }
  const deadline = Date.now() + 10_000;
  for (;;) {
    const probe = new Redis(port, "127.0.0.1", {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on("error", () => undefined); // refused until the server listens; the loop retries
    try {
      await probe.connect();
      await probe.ping();
      probe.disconnect();
      return child;
    } catch {
      probe.disconnect();
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error("redis-server did not start; set EXPORTD_TEST_REDIS_URL or install redis-server");
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

export async function startTestRedis(): Promise<TestRedis> {
  const given = process.env.EXPORTD_TEST_REDIS_URL;
  if (given) return { url: given, stop: async () => undefined };
  const port = await freePort();
  const child = await spawnRedisServer(port);
  const url = `redis://127.0.0.1:${port}`;
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    },
  };
}
