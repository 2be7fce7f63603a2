/**
 * The API's documents as the console reads them (GET /v1/datasets, /v1/exports and the error
 * envelope); the authoritative shapes are the route schemas in src/http/ and /openapi.json.
 */
import type { ExportStatus } from "../../src/domain/status.js";

export interface DatasetField {
  name: string;
  type: string;
  description: string;
}

export interface Dataset {
  name: string;
  description: string;
  columns: DatasetField[];
  filters: DatasetField[];
  formats: string[];
  limits: { max_range_days: number; max_rows: number; max_bytes: number };
  plans: string[] | null;
}

export interface ExportPart {
  index: number;
  rows: number;
  /** Bytes of the part file as stored (compressed when the export is). */
  bytes: number;
  sha256: string;
  filename: string;
  /** Signed link; null without the exports:download scope or before success. */
  url: string | null;
  url_expires_at: string | null;
}

export interface ExportDoc {
  id: string;
  dataset: string;
  status: ExportStatus;
  cancellable: boolean;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  expires_at: string | null;
  request: {
    from: string;
    to: string;
    filters: Record<string, string[]>;
    columns: string[];
    format: string;
    compression: string;
    timezone: string;
  };
  progress: { percent: number; rows: number; parts: number; estimated_rows: number | null };
  attempts: number;
  queue_position: number | null;
  error: { code: string; message: string; retryable: boolean } | null;
  parts: ExportPart[];
}

export interface ExportList {
  data: ExportDoc[];
  next_cursor: string | null;
}

export interface DryRun {
  dataset: string;
  estimated_rows: number | null;
  exceeds_limits: boolean;
  limits: { max_rows: number; max_bytes: number };
}

export interface DownloadLink {
  part: number;
  filename: string;
  url: string;
  expires_at: string;
}

/** What POST /v1/exports accepts from the console (a subset of the API's body). */
export interface CreateBody {
  dataset: string;
  from: string;
  to: string;
  timezone: string;
  format: string;
  filters?: Record<string, string | string[]>;
  columns?: string[];
}

export interface ErrorDetail {
  field: string;
  code: string;
  message: string;
}
