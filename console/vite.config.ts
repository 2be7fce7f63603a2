/**
 * Vite builds of the console (console/): the /console page (index.html and hashed assets) and the
 * <exportd-export> web component as one classic script with a stable name
 * (dist/console/exportd-export.js), which other origins can load without CORS. scripts/build-console.ts
 * runs both as part of `npm run build` (and checks the size budget).
 */
import { fileURLToPath } from "node:url";
import type { InlineConfig, UserConfig } from "vite";

const root = fileURLToPath(new URL(".", import.meta.url));
/** Where exportd serves the console from (src/http/console/routes.ts reads this folder). */
export const CONSOLE_OUT_DIR = fileURLToPath(new URL("../dist/console/", import.meta.url));

/** Preact's automatic JSX runtime (no React). */
const oxc: UserConfig["oxc"] = { jsx: { runtime: "automatic", importSource: "preact" } };

/** The page: index.html plus content-hashed assets under /console/assets/ (cached for a year). */
export const appConfig: InlineConfig = {
  root,
  base: "/console/",
  configFile: false,
  logLevel: "warn",
  oxc,
  build: {
    outDir: CONSOLE_OUT_DIR,
    emptyOutDir: true,
    target: "es2022",
    // Vite's preload polyfill would be an extra script; every supported browser has modulepreload.
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: false,
  },
};

/** The web component: one self-contained IIFE (its CSS inlined into its shadow root). */
export const componentConfig: InlineConfig = {
  root,
  configFile: false,
  logLevel: "warn",
  oxc,
  publicDir: false,
  build: {
    outDir: CONSOLE_OUT_DIR,
    emptyOutDir: false,
    target: "es2022",
    minify: true,
    sourcemap: false,
    reportCompressedSize: false,
    lib: {
      entry: fileURLToPath(new URL("./src/element.tsx", import.meta.url)),
      formats: ["iife"],
      name: "ExportdExport",
      fileName: () => "exportd-export.js",
    },
  },
};

export default appConfig;
