/**
 * The state machine in src/domain/ is the only place that spells an export status: everywhere else
 * asks its predicates and transition table (or iterates EXPORT_STATUSES), so a status cannot be
 * decided in two places that drift apart. Migration files keep the statuses they were written with.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EXPORT_STATUSES } from "../../src/domain/export.js";

const SRC = fileURLToPath(new URL("../../src/", import.meta.url));
/** A status between double quotes, single quotes (SQL) or backticks. */
const QUOTED_STATUS = new RegExp(`(["'\`])(?:${EXPORT_STATUSES.join("|")})\\1`);

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return /\.[cm]?ts$/.test(entry.name) ? [full] : [];
  });
}

/** file:line of each quoted status outside src/domain/ and migration files. */
function statusLiterals(): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const relative = path.relative(SRC, file).split(path.sep).join("/");
    if (relative.startsWith("domain/") || path.basename(file) === "migrations.ts") continue;
    fs.readFileSync(file, "utf8")
      .split("\n")
      .forEach((line, i) => {
        if (QUOTED_STATUS.test(line)) found.push(`src/${relative}:${i + 1}: ${line.trim()}`);
      });
  }
  return found;
}

test("the pattern finds a quoted status in every quoting and nothing else", () => {
  assert.ok(QUOTED_STATUS.test(`status = 'queued'`));
  assert.ok(QUOTED_STATUS.test(`s === "canceled"`));
  assert.ok(QUOTED_STATUS.test("`expired`"));
  assert.ok(!QUOTED_STATUS.test(`"requeued"`));
  assert.ok(!QUOTED_STATUS.test(`counts.queued ?? 0`));
});

test("no export status is spelled outside src/domain/ and migrations", () => {
  const found = statusLiterals();
  assert.ok(found.length === 0, `status literals outside src/domain/:\n${found.join("\n")}`);
});
