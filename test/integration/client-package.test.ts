/**
 * The typed client's package (clients/typescript): its generated types match the current
 * /openapi.json (else run `npm run client:types`), its browser entry imports nothing of Node, and
 * `npm pack` packs the built entries with their types.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { GENERATED_TYPES, renderClientTypes } from "../../scripts/client-types.js";

const CLIENT = fileURLToPath(new URL("../../clients/typescript/", import.meta.url));

test("the committed generated types are those of the current /openapi.json", async () => {
  const expected = await renderClientTypes();
  assert.ok(
    fs.readFileSync(GENERATED_TYPES, "utf8") === expected,
    "clients/typescript/src/generated/openapi.ts is stale: run `npm run client:types` and commit it",
  );
});

test("the browser entry and what it imports use no Node module", () => {
  const browser = ["index.ts", "client.ts", "errors.ts", "sse.ts", "types.ts", "generated/openapi.ts"];
  for (const file of browser) {
    // Code only: the generated types carry the API's descriptions ("…on every process.").
    const text = fs
      .readFileSync(`${CLIENT}src/${file}`, "utf8")
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/^\s*\/\/.*$/gm, "");
    assert.doesNotMatch(text, /from "node:|require\(|\bBuffer\b|process\./, file);
    for (const [, target] of text.matchAll(/from "(\.[^"]+)"/g)) {
      assert.ok(
        browser.includes((target as string).replace(/^\.\//, "").replace(/\.js$/, ".ts")),
        `${file} imports ${target}`,
      );
    }
  }
});

test("npm pack ships the built ESM entries with their types, the README and the license field", () => {
  // The build (npm run build) made dist/; --ignore-scripts keeps prepack from building again.
  const into = fs.mkdtempSync(path.join(os.tmpdir(), "exportd-pack-"));
  const out = execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", into], {
    cwd: CLIENT,
  }).toString();
  const [pack] = JSON.parse(out) as { name: string; filename: string; files: { path: string }[] }[];
  assert.ok(fs.statSync(path.join(into, pack!.filename)).size > 0, "the tarball is written");
  fs.rmSync(into, { recursive: true, force: true });
  const files = pack!.files.map((f) => f.path);
  assert.equal(pack!.name, "@exportd/client");
  for (const f of [
    "README.md",
    "package.json",
    "dist/index.js",
    "dist/index.d.ts",
    "dist/node.js",
    "dist/node.d.ts",
  ]) {
    assert.ok(files.includes(f), `${f} packed (${files.join(", ")})`);
  }
  const manifest = JSON.parse(fs.readFileSync(`${CLIENT}package.json`, "utf8")) as {
    license?: string;
    type?: string;
  };
  assert.equal(manifest.type, "module");
  assert.equal(manifest.license, "Apache-2.0");
});
