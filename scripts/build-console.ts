/**
 * `npm run build` step: builds the console page and the <exportd-export> component with Vite
 * (console/vite.config.ts) into dist/console/, then prints what a first load of /console costs in
 * JavaScript, gzip- and brotli-compressed as exportd serves it, and fails past the 100 KB budget
 * (issue 15's floor). The figures also go to dist/console/sizes.json (not served).
 */
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { build } from "vite";
import { appConfig, CONSOLE_OUT_DIR, componentConfig } from "../console/vite.config.js";

/** The first load's compressed JavaScript may not exceed this (bytes). */
const BUDGET_BYTES = 100 * 1024;

await build(appConfig);
await build(componentConfig);

const html = fs.readFileSync(path.join(CONSOLE_OUT_DIR, "index.html"), "utf8");
/** Scripts and module preloads index.html loads: all of the first load's JavaScript. */
const scripts = [
  ...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*rel="modulepreload"[^>]*\shref)="\/console\/([^"]+)"/g),
].map((m) => m[1]!);
if (scripts.length === 0) throw new Error("dist/console/index.html loads no script: the build is broken");

const sizes = (file: string) => {
  const bytes = fs.readFileSync(path.join(CONSOLE_OUT_DIR, file));
  return {
    raw: bytes.length,
    gzip: zlib.gzipSync(bytes, { level: 9 }).length,
    brotli: zlib.brotliCompressSync(bytes).length,
  };
};
const sum = (files: string[]) =>
  files
    .map(sizes)
    .reduce((a, b) => ({ raw: a.raw + b.raw, gzip: a.gzip + b.gzip, brotli: a.brotli + b.brotli }));
const firstLoad = sum(scripts);
const component = sizes("exportd-export.js");
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
console.log(
  `console: first load ${scripts.length} script(s), ${kb(firstLoad.raw)} raw, ${kb(firstLoad.gzip)} gzip, ${kb(firstLoad.brotli)} brotli (budget ${kb(BUDGET_BYTES)} compressed)`,
);
console.log(
  `console: exportd-export.js ${kb(component.raw)} raw, ${kb(component.gzip)} gzip, ${kb(component.brotli)} brotli`,
);
fs.writeFileSync(
  path.join(CONSOLE_OUT_DIR, "sizes.json"),
  `${JSON.stringify({ budget: BUDGET_BYTES, firstLoad, scripts, component }, null, 2)}\n`,
);
if (firstLoad.gzip > BUDGET_BYTES) {
  console.error(`console: the first load's JavaScript (${kb(firstLoad.gzip)} gzip) is over the budget`);
  process.exit(1);
}
