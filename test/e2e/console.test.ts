/**
 * The /console page and the <exportd-export> component in a real browser: Debian's Chromium driven
 * by playwright-core against the built server process (run `npm run build` first: it also builds
 * the page). The page: sign-in errors, the dry run's estimate and an over-limit range's error,
 * create, progress that moves, cancel, the history, a downloaded part whose SHA-256 is the status's.
 * The component: inside a plain host page, with a token, to a verified download.
 *
 * The host page is answered by the browser itself (page.route) at exportd's origin, so the
 * component's API calls are same-origin: exportd has no CORS yet (issue 13), and this keeps any
 * test-only route out of exportd. Screenshots go to docs/images/console-*.png with
 * UPDATE_SCREENSHOTS=1 only, so `npm test` leaves the tree clean.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Locator, type Page } from "playwright-core";
import {
  api,
  createKey,
  type ServerProcess,
  startServer,
  stopAll,
  tempDataDir,
} from "../helpers/server-process.js";
import { pastMidnight } from "../helpers/service.js";

/** Debian's Chromium (scripts/ensure-chromium.sh installs it before `npm test`), or EXPORTD_CHROMIUM. */
const CHROMIUM = process.env.EXPORTD_CHROMIUM ?? "/usr/bin/chromium";
const DAY = 86_400_000;
const IMAGES = fileURLToPath(new URL("../../docs/images/", import.meta.url));
const BUILT = fileURLToPath(new URL("../../dist/console/index.html", import.meta.url));
const UPDATE_SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === "1";

let server: ServerProcess;
let key: string;
let context: BrowserContext;

/** A local date-time as <input type="datetime-local"> takes it (read in UTC by the form's zone). */
const local = (ms: number) => new Date(ms).toISOString().slice(0, 16);
const to = pastMidnight();

async function screenshot(page: Page, name: string): Promise<void> {
  if (!UPDATE_SCREENSHOTS) return;
  fs.mkdirSync(IMAGES, { recursive: true });
  await page.screenshot({ path: path.join(IMAGES, `console-${name}.png`), fullPage: true });
}

/** Polls `probe` every 50 ms until `done`, failing with the last value after `timeoutMs`. */
async function until<T>(probe: () => Promise<T>, done: (v: T) => boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out; last value ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Waits until the focused element's `property` is `value`. The page moves focus in an effect after
 * it renders, so reading it right after the element appears races the move; this fails (with the
 * last value seen) only if the focus never gets there.
 */
async function focusMovesTo(page: Page, property: "id" | "name" | "className", value: string, what: string) {
  await until(
    () => page.evaluate(`document.activeElement?.${property} ?? null`),
    (v) => v === value,
    10_000,
    what,
  );
}

/** Clicks a download link and returns the SHA-256 (hex) of the file the browser saved. */
async function downloadSha256(page: Page, link: Locator): Promise<{ sha256: string; name: string }> {
  const [download] = await Promise.all([page.waitForEvent("download"), link.click()]);
  const file = await download.path();
  return {
    sha256: createHash("sha256").update(fs.readFileSync(file)).digest("hex"),
    name: download.suggestedFilename(),
  };
}

before(async () => {
  assert.ok(
    fs.existsSync(CHROMIUM),
    `${CHROMIUM} is missing: install Debian's Chromium (apt-get install -y --no-install-recommends chromium; .ci/run does it on CI).`,
  );
  assert.ok(fs.existsSync(BUILT), "dist/console is not built: run `npm run build` first.");
  // One export runs at a time, so a second one waits in the queue; gzip at its slowest level keeps
  // the 31-day export running for the seconds the page needs to show it moving (it is canceled).
  server = await startServer({ env: { EXPORTD_WORKER_CONCURRENCY: "1", EXPORTD_GZIP_LEVEL: "9" } });
  key = createKey(server.dataDir, "acme");
  context = await chromium.launchPersistentContext(tempDataDir("exportd-chromium-"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    acceptDownloads: true,
    timezoneId: "UTC",
    locale: "en-US",
    viewport: { width: 1100, height: 900 },
  });
});

after(async () => {
  await context?.close();
  await stopAll();
});

test("the console: sign in, limits, an over-limit error, create, progress, cancel, history, a verified download", async () => {
  const page = await context.newPage();
  const scripts: { url: string; encoded: number }[] = [];
  page.on("response", async (res) => {
    if (res.request().resourceType() === "script") {
      scripts.push({
        url: res.url(),
        encoded: Number((await res.allHeaders())["content-length"] ?? Number.NaN),
      });
    }
  });
  // Anything the CSP blocks (an inline script or style, another origin) shows in the console.
  const violations: string[] = [];
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  const first = await page.goto(`${server.url}/console`);
  assert.equal(first?.status(), 200);
  const csp = first?.headers()["content-security-policy"] ?? "";
  assert.match(csp, /default-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/);

  // Sign in: a wrong key shows the API's message and code; the right one opens the form.
  const credential = page.getByLabel("API key or token");
  await credential.fill("exk_not-a-key");
  await page.getByRole("button", { name: "Sign in" }).click();
  const signInError = page.getByRole("alert");
  await signInError.waitFor();
  assert.equal(await signInError.locator(".error-code").textContent(), "unauthorized");
  assert.ok(((await signInError.locator(".notice-message").textContent()) ?? "").length > 10);
  await screenshot(page, "sign-in");
  await credential.fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "New export" }).waitFor();

  // First load: every script the page loaded, compressed as served (brotli for Chromium).
  const firstLoadBytes = scripts.reduce((sum, s) => sum + s.encoded, 0);
  console.log(
    `console first load: ${scripts.length} script(s), ${firstLoadBytes} bytes of JavaScript compressed`,
  );
  assert.ok(scripts.length >= 1 && firstLoadBytes < 100 * 1024, JSON.stringify(scripts));

  // The form is driven by its labels (what a screen reader announces).
  await page.getByLabel("Dataset").selectOption("events");
  await page.getByLabel("Time zone").selectOption("UTC");
  await page.getByLabel("Format").selectOption("jsonl");
  const limits = page.locator(".limits");
  assert.match((await limits.textContent()) ?? "", /at most 31 days/);

  // A range over the dataset's 31 days: the dry run's error, then the create's, with their code.
  await page.getByLabel("From (inclusive)").fill(local(to - 40 * DAY));
  await page.getByLabel("To (exclusive)").fill(local(to));
  await limits.getByRole("alert").waitFor();
  assert.equal(await limits.locator(".error-code").textContent(), "invalid_date_range");
  assert.match((await limits.locator(".notice-message").textContent()) ?? "", /31 days/);
  await page.getByRole("button", { name: "Create export" }).click();
  const createError = page.locator("form > .notice.error");
  await createError.waitFor();
  assert.equal(await createError.locator(".error-code").textContent(), "invalid_date_range");
  await focusMovesTo(page, "className", "notice error", "focus moves to the error");
  await screenshot(page, "error");

  // 31 days (about 1.34 million rows): the estimate first, then the export.
  await page.getByLabel("From (inclusive)").fill(local(to - 31 * DAY));
  const estimate = limits.locator(".estimate[data-estimated-rows]");
  await estimate.waitFor();
  assert.equal(await estimate.getAttribute("data-estimated-rows"), String(31 * 43_200));
  await page.getByRole("button", { name: "Create export" }).click();
  const panel = page.locator("section.export-progress");
  await panel.waitFor();
  const exportId = (await panel.getAttribute("data-export-id"))!;
  await focusMovesTo(page, "id", `export-${exportId}`, "focus moves to the export");
  assert.equal(await panel.locator("[aria-live=polite]").count(), 1, "progress is announced politely");
  // The page follows the event stream where the server has it (issue 15's SSE route), else polls.
  const events = await fetch(`${server.url}/v1/exports/${exportId}/events`, {
    headers: { authorization: `Bearer ${key}` },
    signal: AbortSignal.timeout(5000),
  });
  await events.body?.cancel();
  const expectedMode = events.status === 404 ? "polling" : "stream";

  // At once, a second, one-day export: it waits behind the first (one worker runs at a time).
  await page.getByLabel("From (inclusive)").fill(local(to - DAY));
  await page.getByRole("button", { name: "Create export" }).click();
  await until(
    () => panel.getAttribute("data-export-id"),
    (id) => id !== exportId,
    10_000,
    "second export shown",
  );
  const secondId = (await panel.getAttribute("data-export-id"))!;
  assert.match((await panel.locator(".status-line").textContent()) ?? "", /Queued\s+Number 1 in line/);

  // Back to the first from its row in the history: its progress moves — several distinct values
  // strictly between 0 and 100, with the time left shown on the way.
  const firstRow = page.locator(`.history tr[data-export-id="${exportId}"]`);
  await firstRow.getByRole("button", { name: /^Watch/ }).click();
  await until(
    () => panel.getAttribute("data-export-id"),
    (id) => id === exportId,
    10_000,
    "first export shown",
  );
  const bar = panel.locator("progress");
  const seen = new Set<string>();
  let sawEta = false;
  await until(
    async () => {
      const [value, line] = await Promise.all([
        bar.getAttribute("aria-valuetext"),
        panel.locator(".status-line").textContent(),
      ]);
      if (value && value !== "0%" && value !== "100%") seen.add(value);
      if (/left\./.test(line ?? "")) sawEta = true;
      return { values: seen.size, sawEta };
    },
    (p) => p.values >= 2 && p.sawEta,
    60_000,
    "progress moving",
  );
  await screenshot(page, "progress");

  // Cancel it while it runs.
  assert.equal(await panel.getAttribute("data-status"), "running");
  await panel.getByRole("button", { name: "Cancel export" }).click();
  await until(
    () => panel.getAttribute("data-status"),
    (s) => s === "canceled",
    10_000,
    "canceled",
  );
  assert.equal(
    await page.evaluate("document.activeElement.id"),
    `export-${exportId}`,
    "focus stays in the export",
  );
  const http = api(server.url, key);
  assert.equal((await http.get(`/v1/exports/${exportId}`)).json.status, "canceled");
  await until(
    () => firstRow.getAttribute("data-status"),
    (s) => s === "canceled",
    10_000,
    "history row canceled",
  );

  // The second runs next and ends; its part, downloaded by the browser, is the one its status describes.
  const secondRow = page.locator(`.history tr[data-export-id="${secondId}"]`);
  await secondRow.locator("button.open").click();
  await until(
    () => panel.getAttribute("data-status"),
    (s) => s === "succeeded",
    60_000,
    "second export succeeded",
  );
  assert.equal(await panel.getAttribute("data-export-id"), secondId);
  assert.equal(await panel.getAttribute("data-mode"), expectedMode);
  const status = (await http.get(`/v1/exports/${secondId}`)).json;
  assert.equal(status.parts.length, 1);
  const part = status.parts[0]!;
  const link = panel.locator(`a.download[data-part="0"]`);
  assert.match((await link.getAttribute("aria-label")) ?? "", /^Download part 1 of 1: .+, 43,200 rows$/);
  const downloaded = await downloadSha256(page, link);
  assert.equal(downloaded.sha256, part.sha256, "the downloaded bytes are the part the status describes");
  assert.equal(downloaded.name, part.filename);

  // The history lists it with rows, size and its download link.
  await until(
    () => secondRow.getAttribute("data-status"),
    (s) => s === "succeeded",
    10_000,
    "history succeeded",
  );
  assert.equal(await secondRow.locator("a.download").count(), 1);
  assert.match((await secondRow.textContent()) ?? "", /43,200/);
  await screenshot(page, "done");

  // A phone: the same page in one column (the history as cards); nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = Number(
    await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"),
  );
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone's screen`);
  await screenshot(page, "phone");
  assert.deepEqual(violations, [], "nothing on the page breaks its Content-Security-Policy");
  await page.close();
});

test("a token handed over in the URL fragment signs in once, leaves the address bar, and signing out forgets it", async () => {
  const page = await context.newPage();
  await page.goto(`${server.url}/console#token=${encodeURIComponent(key)}`);
  await page.getByRole("heading", { name: "New export" }).waitFor();
  assert.equal(new URL(page.url()).hash, "");
  assert.equal(await page.evaluate("sessionStorage.getItem('exportd.credential')"), key);
  // Signing out forgets it and puts the cursor back in the sign-in field.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key or token").waitFor();
  await focusMovesTo(page, "name", "credential", "the cursor is back in the sign-in field");
  assert.equal(await page.evaluate("sessionStorage.getItem('exportd.credential')"), null);
  await page.close();
});

test("<exportd-export> in a plain host page with a token: export, progress, a verified download", async () => {
  const page = await context.newPage();
  const host = `${server.url}/embed-host.html`;
  const from = local(to - DAY);
  await page.route(host, (route) =>
    route.fulfill({
      contentType: "text/html; charset=utf-8",
      body: `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme app</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/console/exportd-export.js" defer></script></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 2rem auto">
<h1>Acme analytics</h1><p>Your product's own page, with exportd's component below.</p>
<exportd-export dataset="events" timezone="UTC" from="${from}" to="${local(to)}" format="csv" label="Export my events"></exportd-export>
</body></html>`,
    }),
  );
  await page.goto(host);
  const element = page.locator("exportd-export");
  // The product hands its token over as a property (an attribute would show in the DOM).
  await element.evaluate((el, token) => {
    (el as unknown as { token: string }).token = token;
  }, key);
  const finished = element.evaluate(
    (el) =>
      new Promise<string>((resolve) =>
        el.addEventListener("exportd-finished", (e: unknown) =>
          resolve((e as { detail: { status: string } }).detail.status),
        ),
      ),
  );
  const estimate = element.locator(".estimate[data-estimated-rows]");
  await estimate.waitFor();
  assert.equal(await estimate.getAttribute("data-estimated-rows"), "43200");
  // Keyboard only: focus the button and press Enter.
  await element.getByRole("button", { name: "Export my events" }).focus();
  await page.keyboard.press("Enter");
  const panel = element.locator("section.export-progress");
  await until(
    () => panel.getAttribute("data-status"),
    (s) => s === "succeeded",
    60_000,
    "component export",
  );
  assert.equal(await finished, "succeeded");
  const id = (await panel.getAttribute("data-export-id"))!;
  const status = (await api(server.url, key).get(`/v1/exports/${id}`)).json;
  assert.equal(status.parts.length, 1);
  const downloaded = await downloadSha256(page, panel.locator(`a.download[data-part="0"]`));
  assert.equal(downloaded.sha256, status.parts[0]!.sha256);
  await screenshot(page, "component");
  await page.close();
});
