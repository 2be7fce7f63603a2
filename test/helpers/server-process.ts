/**
 * The built CLI (dist/cli/main.js, so run `npm run build` first) as a real server process: start
 * on a free port, stop with SIGTERM, kill -9, plus the admin CLI beside it and a small HTTP client.
 *
 * Every process started here is tracked: call `stopAll()` in an `after` hook so nothing outlives a
 * failing test (it also removes the temporary data folders this module created). A process `exit`
 * hook SIGKILLs whatever is left as a last resort.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./net.js";

export const CLI = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface ServerProcess {
  url: string;
  port: number;
  dataDir: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Everything the process wrote to stdout so far. */
  stdout(): string;
  /** stdout and stderr together, in arrival order. */
  output(): string;
  /** SIGTERM, then wait for the exit and the last of its output. */
  stop(): Promise<void>;
  /** SIGKILL, then wait for the exit and the last of its output. */
  kill9(): Promise<void>;
  /**
   * Resolves once the process has exited and its stdout and stderr are read to the end. Node's
   * `exit` event may come before the last output is read: wait for this before asserting on it.
   */
  closed: Promise<void>;
}

const running = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** A fresh, empty temporary folder; `stopAll()` removes it. */
export function tempDataDir(prefix = "exportd-e2e-"): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  ownedDirs.add(dir);
  return dir;
}

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function exited(child: ChildProcess): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** The parent's environment without any exportd setting a developer may have exported. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("EXPORTD_") && name !== "PORT" && name !== "HOST") env[name] = value;
  }
  return env;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long a spawned server may take to answer /healthz: a loaded 2-core CI machine is slow to start Node. */
const START_TIMEOUT_MS = 60_000;

/**
 * Spawns `node dist/cli/main.js serve` and resolves once GET /healthz answers 200 (polled every
 * 50 ms for up to START_TIMEOUT_MS). Fails at once, with the process's stderr, if it exits first —
 * except when another process took the free port between freePort() and the bind (EADDRINUSE, on a
 * machine shared by several test runs): then it starts again on another port.
 */
export async function startServer(
  options: { dataDir?: string; env?: Record<string, string>; nodeArgs?: string[] } = {},
): Promise<ServerProcess> {
  for (let tries = 1; ; tries++) {
    try {
      return await startServerOnce(options);
    } catch (err) {
      if (!(err instanceof PortTaken) || tries === 3) throw err;
    }
  }
}

/** The port chosen was bound by someone else before the server could bind it. */
class PortTaken extends Error {}

async function startServerOnce(options: {
  dataDir?: string;
  env?: Record<string, string>;
  nodeArgs?: string[];
}): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? tempDataDir();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, "serve"], {
    env: {
      ...baseEnv(),
      PORT: String(port),
      // Bind and sign links on IPv4 loopback: "localhost" may resolve to ::1 first.
      HOST: "127.0.0.1",
      EXPORTD_PUBLIC_URL: url,
      EXPORTD_DATA_DIR: dataDir,
      EXPORTD_LOG_LEVEL: "warn",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const closed = new Promise<void>((resolve) => child.once("close", () => resolve()));
  let stdout = "";
  let stderr = "";
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    output += d.toString();
  });
  let spawnError: Error | null = null;
  child.once("error", (err) => {
    spawnError = err;
  });

  const server: ServerProcess = {
    url,
    port,
    dataDir,
    child,
    stderr: () => stderr,
    stdout: () => stdout,
    output: () => output,
    closed,
    async stop() {
      if (!hasExited(child)) child.kill("SIGTERM");
      await closed;
    },
    async kill9() {
      if (!hasExited(child)) child.kill("SIGKILL");
      await closed;
    },
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (spawnError) throw spawnError;
    if (hasExited(child)) {
      await closed; // its last words, which may be read after the exit
      if (/EADDRINUSE/.test(output)) throw new PortTaken(`port ${port} was taken:\n${output}`);
      throw new Error(
        `exportd serve exited (code ${child.exitCode}, signal ${child.signalCode}) before it was healthy:\n${stderr}`,
      );
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.kill9();
      throw new Error(`exportd serve did not answer /healthz within ${START_TIMEOUT_MS} ms:\n${stderr}`);
    }
    await sleep(50);
  }
}

/**
 * Stops every process this module started (SIGTERM, SIGKILL after `graceMs`) and removes the
 * temporary data folders it created. Safe to call more than once; meant for `after` hooks.
 */
export async function stopAll(graceMs = 5000): Promise<void> {
  await Promise.all(
    [...running].map(async (child) => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited(child);
      clearTimeout(timer);
    }),
  );
  for (const dir of ownedDirs) fs.rmSync(dir, { recursive: true, force: true });
  ownedDirs.clear();
}

/** Runs the real CLI against a data folder (and any other settings); returns its stdout. */
export function cli(dataDir: string, args: string[], env: Record<string, string> = {}): string {
  try {
    return execFileSync(process.execPath, [CLI, ...args], {
      env: { ...baseEnv(), EXPORTD_DATA_DIR: dataDir, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30_000,
    }).toString();
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`exportd ${args.join(" ")} failed: ${stderr.trim() || String(err)}`);
  }
}

/** `exportd keys create` through the real CLI; the key is the last line of stdout. */
export function createKey(
  dataDir: string,
  tenant: string,
  scopes?: string[],
  env: Record<string, string> = {},
): string {
  const args = ["keys", "create", "--tenant", tenant, ...(scopes ? ["--scopes", scopes.join(",")] : [])];
  const lines = cli(dataDir, args, env).trim().split("\n");
  return lines[lines.length - 1]!.trim();
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The parts of an export's status the end-to-end tests read. */
export interface ExportView {
  id: string;
  status: string;
  cancellable: boolean;
  attempts: number;
  progress: { percent: number; rows: number; parts: number; estimated_rows: number | null };
  parts: {
    index: number;
    rows: number;
    bytes: number;
    sha256: string;
    filename: string;
    url: string;
    url_expires_at: string | null;
  }[];
  error: { code: string; message: string } | null;
}

/** The error envelope every error answer carries. */
export interface ErrorBody {
  error: {
    code: string;
    message: string;
    request_id: string;
    details: { field: string; code: string; message: string }[];
  };
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  /** The parsed JSON body; null when the body is empty or not JSON. */
  json: T;
  /** The body as text (for assertion messages and searches). */
  text: string;
}

/**
 * A small fetch wrapper for the API with one key (null: no Authorization header). Bodies are read
 * whole; redirects are never followed, so a 302 comes back as it is.
 */
export function api(url: string, key: string | null) {
  async function request<T = unknown>(
    method: string,
    pathname: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse<T>> {
    const res = await fetch(`${url}${pathname}`, {
      method,
      redirect: "manual",
      headers: {
        ...(key === null ? {} : { authorization: `Bearer ${key}` }),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text === "" ? null : JSON.parse(text);
    } catch {
      json = null;
    }
    return { status: res.status, headers: res.headers, json: json as T, text };
  }
  return {
    request,
    get: <T = ExportView>(pathname: string, headers?: Record<string, string>) =>
      request<T>("GET", pathname, undefined, headers),
    post: <T = ExportView>(pathname: string, body?: unknown, headers?: Record<string, string>) =>
      request<T>("POST", pathname, body, headers),
  };
}

/** The error code of an error answer (consumes the body). */
export async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as ErrorBody).error.code;
}

/** A typed client for the export routes (used by the chaos test). */
export function client(url: string, key: string) {
  const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
  return {
    async create(body: Record<string, unknown>) {
      const res = await fetch(`${url}/v1/exports`, { method: "POST", headers, body: JSON.stringify(body) });
      return {
        status: res.status,
        location: res.headers.get("location"),
        body: (await res.json()) as ExportView,
      };
    },
    async get(id: string): Promise<ExportView> {
      return (await fetch(`${url}/v1/exports/${id}`, { headers })).json() as Promise<ExportView>;
    },
    async post(path: string) {
      const res = await fetch(`${url}${path}`, { method: "POST", headers });
      return { status: res.status, body: (await res.json()) as ExportView & { error: { code: string } } };
    },
    raw(path: string, init: RequestInit = {}) {
      return fetch(`${url}${path}`, { ...init, headers: { authorization: headers.authorization } });
    },
  };
}

/** Every file below `dir`, as paths relative to it; [] when `dir` does not exist. */
export function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)));
}
