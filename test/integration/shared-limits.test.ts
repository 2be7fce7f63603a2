/** With EXPORTD_REDIS_URL, every API process draws on one rate-limit budget per key. */
import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { createService, type Service } from "../../src/service.js";
import { issueApiKey } from "../../src/usecases/api-keys.js";
import { startTestRedis, type TestRedis } from "../helpers/redis.js";
import { tempDir } from "../helpers/service.js";

let redis: TestRedis;
const services: Service[] = [];
const dataDir = tempDir();

before(async () => {
  redis = await startTestRedis();
});
after(async () => {
  for (const s of services) await s.close();
  await redis.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

test("two API processes on one Redis share each key's budget; /readyz reports Redis", async () => {
  const env = {
    EXPORTD_DATA_DIR: dataDir,
    EXPORTD_ROLE: "api",
    EXPORTD_REDIS_URL: redis.url,
    EXPORTD_LOG_LEVEL: "silent",
  };
  for (let i = 0; i < 2; i++) services.push(await createService(loadConfig(env), pino({ level: "silent" })));
  const [one, two] = services as [Service, Service];
  const { key } = await issueApiKey(one.store, `shared-${Date.now()}`, ["exports:read"], Date.now());
  const tenant = (await one.store.listTenants()).find((t) => t.name.startsWith("shared-"))!;
  await one.store.updateTenant(tenant.name, { overrides: { requestsPerMinute: 6 } });
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) {
    const app = (i % 2 === 0 ? one : two).app!;
    const res = await app.inject({
      method: "GET",
      url: "/v1/exports",
      headers: { authorization: `Bearer ${key}` },
    });
    statuses.push(res.statusCode);
  }
  assert.equal(statuses.filter((s) => s === 200).length, 6, `one budget across both: ${statuses.join(",")}`);
  assert.equal(statuses.filter((s) => s === 429).length, 4);
  const ready = await two.app!.inject({ method: "GET", url: "/readyz" });
  assert.equal(ready.statusCode, 200);
  assert.equal(ready.json().checks.redis, "ok");
});
