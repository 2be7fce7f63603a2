/** Logs are JSON lines carrying request, tenant and export ids — and never a key or a link signature. */
import assert from "node:assert/strict";
import fs from "node:fs";
import { Writable } from "node:stream";
import { test } from "node:test";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import { createService } from "../../src/service.js";
import { issueApiKey } from "../../src/usecases/api-keys.js";
import { pastMidnight, tempDir, waitFor } from "../helpers/service.js";

test("request logs carry ids; keys and signatures never appear", async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().trim().split("\n"));
      done();
    },
  });
  const dataDir = tempDir();
  const svc = await createService(loadConfig({ EXPORTD_DATA_DIR: dataDir }), pino({ level: "info" }, sink));
  try {
    const { key } = await issueApiKey(
      svc.store,
      "acme",
      ["exports:read", "exports:write", "exports:download"],
      Date.now(),
    );
    const to = pastMidnight();
    const auth = { authorization: `Bearer ${key}` };
    const created = await svc.app!.inject({
      method: "POST",
      url: "/v1/exports",
      headers: auth,
      payload: {
        dataset: "events",
        from: new Date(to - 3_600_000).toISOString(),
        to: new Date(to).toISOString(),
      },
    });
    const id = created.json().id as string;
    const done = await waitFor(
      async () => (await svc.app!.inject({ method: "GET", url: `/v1/exports/${id}`, headers: auth })).json(),
      (e) => e.status === "succeeded",
    );
    const link = new URL(done.parts[0].url);
    await svc.app!.inject({ method: "GET", url: link.pathname + link.search });
    await svc.app!.inject({ method: "GET", url: "/v1/exports", headers: { authorization: "Bearer wrong" } });

    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const requests = records.filter((r) => r.msg === "request");
    assert.ok(requests.length >= 4);
    for (const r of requests) assert.match(String(r.request_id), /^req_/);
    const statusRead = requests.find((r) => r.path === `/v1/exports/${id}`);
    assert.ok(statusRead?.tenant_id, "tenant id on authenticated requests");
    assert.equal(statusRead?.export_id, id);
    assert.ok(records.some((r) => r.msg === "export succeeded" && r.export_id === id));
    const all = lines.join("\n");
    // The secret is everything after exd_<prefix>_ — base64url, so it may itself hold "_".
    assert.equal(all.includes(key.split("_").slice(2).join("_")), false, "no key in the logs");
    assert.equal(all.includes(link.searchParams.get("signature")!), false, "no link signature in the logs");
  } finally {
    await svc.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
