/** Builds a whole exportd in process on a fresh data folder (real SQLite file, real local storage). */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { loadConfig } from "../../src/config/index.js";
import type { Scope } from "../../src/domain/scopes.js";
import { SCOPES } from "../../src/domain/scopes.js";
import { createService, type Service } from "../../src/service.js";
import { issueApiKey } from "../../src/usecases/api-keys.js";

export interface TestService extends Service {
  dataDir: string;
  /** Creates a tenant (if needed) and a key for it. */
  key(tenant: string, scopes?: Scope[]): Promise<string>;
  dispose(): Promise<void>;
}

export function tempDir(prefix = "exportd-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export async function startTestService(
  env: Record<string, string> = {},
  clock: () => number = Date.now,
): Promise<TestService> {
  const dataDir = tempDir();
  const config = loadConfig({ EXPORTD_DATA_DIR: dataDir, EXPORTD_LOG_LEVEL: "silent", ...env });
  const service = await createService(config, pino({ level: "silent" }), clock);
  return {
    ...service,
    dataDir,
    async key(tenant, scopes = [...SCOPES]) {
      return (await issueApiKey(service.store, tenant, scopes, clock())).key;
    },
    async dispose() {
      await service.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A past UTC midnight, so the demo data in ranges ending there is complete and stable. */
export function pastMidnight(daysAgo = 1): number {
  const d = new Date();
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - daysAgo);
}

export async function waitFor<T>(
  probe: () => Promise<T> | T,
  done: (value: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out; last value: ${JSON.stringify(value).slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
