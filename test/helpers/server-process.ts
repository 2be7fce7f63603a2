/** The built CLI as a real server process: start, stop, kill -9, and the admin CLI beside it. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import { freePort } from "./net.js";
import { tempDir } from "./service.js";

export const CLI = fileURLToPath(new URL("../../dist/cli/main.js", import.meta.url));

export interface ServerProcess {
  url: string;
  dataDir: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<void>;
  /** SIGKILL, then wait for the exit. */
  kill9(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export async function startServer(options: { dataDir?: string; env?: Record<string, string> } = {}) {
  const dataDir = options.dataDir ?? tempDir("exportd-e2e-");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [CLI, "serve"], {
    env: {
      ...process.env,
      PORT: String(port),
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
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${output}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`server did not start:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const server: ServerProcess = {
    url,
    dataDir,
    child,
    output: () => output,
    async stop() {
      child.kill("SIGTERM");
      await exited(child);
    },
    async kill9() {
      child.kill("SIGKILL");
      await exited(child);
    },
  };
  return server;
}

/** Runs the real CLI against a data folder (and any other settings); returns its stdout. */
export function cli(dataDir: string, args: string[], env: Record<string, string> = {}): string {
  try {
    return execFileSync(process.execPath, [CLI, ...args], {
      env: { ...process.env, EXPORTD_DATA_DIR: dataDir, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }).toString();
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`exportd ${args.join(" ")} failed: ${stderr.split("\n")[0]}`);
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
  progress: { percent: number; rows: number; parts: number };
  parts: { index: number; rows: number; bytes: number; sha256: string; filename: string; url: string }[];
  error: { code: string; message: string } | null;
}

/** The error code of an error answer. */
export async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

/** A small client for the API with one key. Error answers come back as `{ error }` in the body. */
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
