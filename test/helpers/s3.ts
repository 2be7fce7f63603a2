/**
 * A real S3-compatible server for tests: s3rver, in this process, on a free port, with its data in
 * a temporary folder. It checks link expiry but not signatures (the S3 contract tests say so).
 */
import fs from "node:fs";
import S3rver from "s3rver";
import type { S3Settings } from "../../src/config/index.js";
import { freePort } from "./net.js";
import { tempDir } from "./service.js";

export interface TestS3 {
  settings: S3Settings;
  /** Environment for a service process or createService using this server. */
  env: Record<string, string>;
  stop(): Promise<void>;
  /** Stops the server but keeps its data, so it can come back (fault tests). */
  pause(): Promise<void>;
  resume(): Promise<void>;
}

export async function startTestS3(bucket = "exportd-test"): Promise<TestS3> {
  const directory = tempDir("exportd-s3-");
  const port = await freePort();
  const make = () =>
    new S3rver({ address: "127.0.0.1", port, silent: true, directory, configureBuckets: [{ name: bucket }] });
  let server = make();
  await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const settings: S3Settings = {
    bucket,
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    idleTimeoutMs: 30_000,
  };
  return {
    settings,
    env: {
      EXPORTD_STORAGE: "s3",
      EXPORTD_S3_BUCKET: bucket,
      EXPORTD_S3_ENDPOINT: endpoint,
      EXPORTD_S3_FORCE_PATH_STYLE: "true",
      EXPORTD_S3_ACCESS_KEY_ID: "S3RVER",
      EXPORTD_S3_SECRET_ACCESS_KEY: "S3RVER",
    },
    async stop() {
      await server.close();
      fs.rmSync(directory, { recursive: true, force: true });
    },
    async pause() {
      await server.close();
    },
    async resume() {
      server = make();
      await server.run();
    },
  };
}
