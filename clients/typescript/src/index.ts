/**
 * @exportd/client — the typed client of exportd's API for Node 20+ and browsers (fetch only). Files
 * and resumed downloads to a folder are in the Node entry, `@exportd/client/node`.
 */
export {
  type CallOptions,
  ExportdClient,
  type ExportdClientOptions,
  type ProgressEvent,
  retryAfterSeconds,
  sha256Hex,
  sleep,
  type WaitOptions,
} from "./client.js";
export {
  ChecksumMismatchError,
  ExportdAbortError,
  ExportdApiError,
  ExportdClientError,
  ExportdNetworkError,
} from "./errors.js";
export type { components, operations, paths } from "./generated/openapi.js";
export { readEvents, type ServerSentEvent, type SseEvent, SseParser } from "./sse.js";
export * from "./types.js";
