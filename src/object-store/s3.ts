/**
 * S3-compatible object store. Parts stream up as multipart uploads (lib-storage's Upload, which
 * keeps a bounded number of 8 MB chunks in memory); S3 shows an object only once the upload is
 * completed, so nothing partial is ever visible. Links are presigned GETs that carry the download
 * name and type (response-content-disposition, response-content-type).
 */
import { PassThrough, Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { S3Settings } from "../config/index.js";
import { contentDisposition } from "./content-disposition.js";
import { contentTypeOf } from "./content-type.js";
import type { ObjectStore, ObjectUpload, SignedLink } from "./types.js";

const PART_SIZE = 8 * 1024 * 1024;
/** A TCP connect to a reachable S3 endpoint takes milliseconds; past this it is away. */
const CONNECT_TIMEOUT_MS = 5000;

export class S3ObjectStore implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(settings: S3Settings) {
    this.bucket = settings.bucket;
    this.client = new S3Client({
      region: settings.region,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.forcePathStyle,
      ...(settings.accessKeyId && settings.secretAccessKey
        ? { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }
        : {}),
      // Checksums only where S3 requires them: S3-compatible servers often lack the newer trailers.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
      // Without these a server that accepts a connection and never answers holds the request (and
      // the run, the cancel, the purge) forever. An idle socket, not a total time: an 8 MB part on a
      // slow link may take long while bytes still move. The connect itself gets the same bound.
      requestHandler: {
        connectionTimeout: Math.min(settings.idleTimeoutMs, CONNECT_TIMEOUT_MS),
        socketTimeout: settings.idleTimeoutMs,
      },
    });
  }

  async upload(key: string): Promise<ObjectUpload> {
    const body = new PassThrough({ highWaterMark: 1024 * 1024 });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: body, ContentType: contentTypeOf(key) },
      partSize: PART_SIZE,
      queueSize: 2,
      leavePartsOnError: false,
    });
    const done = upload.done();
    // A failed upload stops reading its body: fail the body too, so the writer learns now instead
    // of waiting on backpressure forever. (commit/abort observe the rejection itself.)
    done.catch((err: unknown) => body.destroy(err instanceof Error ? err : new Error(String(err))));
    return {
      stream: body,
      async commit() {
        await done;
      },
      async abort() {
        body.destroy();
        await upload.abort().catch(() => undefined);
        await done.catch(() => undefined);
      },
    };
  }

  private async *keysUnder(prefix: string): AsyncIterable<string[]> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      yield (page.Contents ?? []).map((o) => o.Key as string);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const page of this.keysUnder(prefix)) keys.push(...page);
    return keys;
  }

  /**
   * Aborts multipart uploads a crashed writer left behind. Some S3-compatible servers do not
   * implement listing them; there, a bucket lifecycle rule (AbortIncompleteMultipartUpload) is the
   * safety net — an unfinished upload is never a visible object either way.
   */
  async dropIncompleteUploads(prefix: string): Promise<void> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client
        .send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        )
        .catch((err: unknown) => {
          if ((err as { name?: string }).name === "NotImplemented") return null;
          throw err;
        });
      if (!page) return;
      for (const u of page.Uploads ?? []) {
        await this.client.send(
          new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }),
        );
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
  }

  async deletePrefix(prefix: string): Promise<void> {
    await this.dropIncompleteUploads(prefix);
    for await (const keys of this.keysUnder(prefix)) {
      if (keys.length === 0) continue;
      await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true },
        }),
      );
    }
  }

  /**
   * A ranged GetObject (`Range: bytes=start-end`). The request is retried as every request of this
   * client is (maxAttempts, for network errors, 5xx and throttling) until the body starts; a body
   * cut off later errors the stream (its length is checked against the range). Destroying the
   * stream, or aborting `signal`, closes its connection, so a download the client left frees it.
   */
  async openRange(key: string, start: number, endInclusive: number, signal?: AbortSignal): Promise<Readable> {
    if (start < 0 || endInclusive < start) throw new RangeError(`bytes ${start}-${endInclusive} of ${key}`);
    const answer = await this.client.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${endInclusive}` }),
      signal ? { abortSignal: signal } : {},
    );
    const body = answer.Body;
    if (!(body instanceof Readable)) throw new Error(`S3 answered ${key} without a stream body`);
    const expected = endInclusive - start + 1;
    if (answer.ContentLength !== expected) {
      body.destroy();
      throw Object.assign(
        new RangeError(`S3 holds ${answer.ContentLength} bytes of ${key} from ${start}; ${expected} asked`),
        { code: "ERANGE" },
      );
    }
    // The abort signal only covers the request: once the body streams, it destroys the body.
    if (signal) {
      const onAbort = (): void => {
        body.destroy(new Error("aborted"));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      body.once("close", () => signal.removeEventListener("abort", onAbort));
    }
    return body;
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async signedLink(key: string, filename: string, ttlSeconds: number, now: number): Promise<SignedLink> {
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: key,
      ResponseContentDisposition: contentDisposition(filename),
      // Also right for objects uploaded with another type by earlier versions.
      ResponseContentType: contentTypeOf(filename),
    });
    const url = await getSignedUrl(this.client, command, {
      expiresIn: ttlSeconds,
      signingDate: new Date(now),
    });
    return { url, expiresAt: Math.floor(now / 1000) * 1000 + ttlSeconds * 1000 };
  }

  async ping(): Promise<void> {
    await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
