/**
 * `exportd export` and `exportd exports …` (the built CLI, dist/cli/main.js) against real servers:
 * A (API and worker) runs exports; C (API only) keeps them queued, so Ctrl-C arrives while the CLI
 * waits. Checks --wait --download (files verified), --json, each documented exit code, and that
 * SIGINT leaves the export running (or cancels it with --cancel-on-interrupt).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { freePort } from "../helpers/net.js";
import {
  api,
  CLI,
  createKey,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight } from "../helpers/service.js";

const DAY = 86_400_000;
const to = pastMidnight();
const range = [
  "--dataset",
  "events",
  "--from",
  new Date(to - DAY).toISOString(),
  "--to",
  new Date(to).toISOString(),
];
const sha256 = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

after(() => stopAll());

/** The environment without the developer's exportd settings, plus the client's. */
function env(server: ServerProcess | null, key: string): NodeJS.ProcessEnv {
  const clean: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env))
    if (!name.startsWith("EXPORTD_")) clean[name] = value;
  return { ...clean, ...(server ? { EXPORTD_URL: server.url } : {}), EXPORTD_API_KEY: key };
}

function run(args: string[], environment: NodeJS.ProcessEnv) {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: environment, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe("exportd export / exports against a real server", () => {
  let a: ServerProcess;
  let c: ServerProcess;
  let keyA: string;
  let keyC: string;

  before(async () => {
    [a, c] = await Promise.all([
      startServer({ env: { EXPORTD_EVENT_POLL_MS: "100" } }),
      startServer({ env: { EXPORTD_ROLE: "api", EXPORTD_EVENT_POLL_MS: "100" } }),
    ]);
    keyA = createKey(a.dataDir, "acme");
    keyC = createKey(c.dataDir, "acme");
  });

  test("--wait --download DIR: exit 0, progress lines on stderr, every part saved and verified", async () => {
    const dir = path.join(tempDataDir(), "out");
    const r = run(
      [
        "export",
        ...range,
        "--filter",
        "type=click",
        "--filter",
        "type=purchase",
        "--columns",
        "id,occurred_at,type",
        "--download",
        dir,
        "--format",
        "csv",
      ],
      env(a, keyA),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^Export \S+ queued\.$/m);
    assert.match(
      r.stderr,
      /^succeeded 100\.0% [\d,]+ of ~[\d,]+ rows$/m,
      "plain progress lines when not a TTY",
    );
    const id = /^(\S+)\tsucceeded\t/m.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    const exp = (await api(a.url, keyA).get(`/v1/exports/${id}`)).json;
    assert.deepEqual(exp.parts.length > 0, true);
    for (const part of exp.parts) {
      const file = path.join(dir, part.filename);
      assert.equal(sha256(file), part.sha256);
      assert.ok(r.stdout.includes(file));
    }
  });

  test("--json prints one JSON document; exports get/list/wait --json too", () => {
    const r = run(
      ["export", ...range, "--wait", "--json", "--format", "jsonl", "--tz", "Europe/Berlin"],
      env(a, keyA),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "", "nothing but the document with --json");
    const out = JSON.parse(r.stdout) as {
      export: { id: string; status: string; request: { format: string; timezone: string } };
      files: unknown[];
    };
    assert.equal(out.export.status, "succeeded");
    assert.equal(out.export.request.format, "jsonl");
    assert.equal(out.export.request.timezone, "Europe/Berlin");
    assert.deepEqual(out.files, []);
    const got = run(["exports", "get", out.export.id, "--json"], env(a, keyA));
    assert.equal(got.code, 0);
    assert.equal((JSON.parse(got.stdout) as { id: string }).id, out.export.id);
    const list = run(["exports", "list", "--limit", "1", "--json"], env(a, keyA));
    assert.equal((JSON.parse(list.stdout) as { id: string }[])[0]?.id, out.export.id);
  });

  test("exit codes: 1 canceled, 2 usage, 3 server unreachable, 4 checksum, 5 refused", async () => {
    const queued = run(["export", ...range], env(c, keyC));
    assert.equal(queued.code, 0, "created without --wait: done");
    const id = /^(\S+)\tqueued\t/m.exec(queued.stdout)?.[1];
    assert.ok(id, queued.stdout);
    assert.equal(run(["exports", "cancel", id], env(c, keyC)).code, 0);
    const canceled = run(["exports", "wait", id], env(c, keyC));
    assert.equal(canceled.code, 1);
    assert.match(canceled.stdout, /\tcanceled\t/);

    const usage = run(["export", "--from", "2024-01-01"], env(c, keyC));
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--dataset is required/);
    assert.equal(run(["export", ...range], env(c, "")).code, 2, "no key");

    const refused = run(["export", ...range.slice(2), "--dataset", "nope"], env(c, keyC));
    assert.equal(refused.code, 5);
    assert.match(refused.stderr, /invalid_request: .*\n {2}dataset: Unknown dataset "nope"/);
    assert.equal(run(["exports", "get", id], env(c, "not-a-key")).code, 5, "unauthorized");

    const closed = `http://127.0.0.1:${await freePort()}`;
    const unreachable = run(["exports", "list", "--url", closed, "--retries", "0"], env(null, keyC));
    assert.equal(unreachable.code, 3);

    // A partial file of the part's size but other bytes: nothing left to fetch, and the hash fails.
    const done = run(["export", ...range, "--wait", "--json"], env(a, keyA));
    const exp = (
      JSON.parse(done.stdout) as { export: { id: string; parts: { filename: string; bytes: number }[] } }
    ).export;
    const dir = tempDataDir();
    const part = exp.parts[0]!;
    fs.writeFileSync(path.join(dir, `${part.filename}.partial`), Buffer.alloc(part.bytes, 1));
    const mismatch = run(["exports", "download", exp.id, "--dir", dir], env(a, keyA));
    assert.equal(mismatch.code, 4, mismatch.stderr);
    assert.match(mismatch.stderr, /SHA-256/);
    assert.deepEqual(fs.readdirSync(dir), [], "the partial file is gone, no file under the part's name");
    // Downloaded again: fine.
    assert.equal(run(["exports", "download", exp.id, "--dir", dir], env(a, keyA)).code, 0);
    assert.deepEqual(fs.readdirSync(dir), [part.filename]);
  });

  for (const cancel of [false, true]) {
    test(`Ctrl-C while waiting ${cancel ? "with --cancel-on-interrupt cancels the export" : "leaves the export running and prints how to resume"} (exit 130)`, async () => {
      const args = [
        "export",
        ...range,
        "--download",
        "/tmp/nowhere",
        ...(cancel ? ["--cancel-on-interrupt"] : []),
      ];
      const child = spawn(process.execPath, [CLI, ...args], { env: env(c, keyC) });
      let stderr = "";
      const waiting = new Promise<void>((resolve) =>
        child.stderr.on("data", (d: Buffer) => {
          stderr += d.toString();
          if (/place \d+ in the queue/.test(stderr)) resolve();
        }),
      );
      // "close", not "exit": the exit may be seen before the last of stderr is read.
      const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
      await waiting;
      child.kill("SIGINT");
      assert.equal(await exited, 130, stderr);
      const id = /^Export (\S+) queued\.$/m.exec(stderr)?.[1];
      assert.ok(id, stderr);
      const status = (await api(c.url, keyC).get(`/v1/exports/${id}`)).json.status;
      if (cancel) {
        assert.equal(status, "canceled");
        assert.match(stderr, new RegExp(`Interrupted: export ${id} is canceled`));
      } else {
        assert.equal(status, "queued");
        assert.ok(stderr.includes(`exportd exports wait ${id} --download /tmp/nowhere`), stderr);
      }
    });
  }
});
