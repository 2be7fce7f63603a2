/** A small, valid export request (a CSV of the demo dataset's ids) for store-level tests and benchmarks. */
import type { ExportRequest } from "../../src/domain/export.js";

export const SAMPLE_REQUEST: ExportRequest = {
  dataset: "events",
  from: 0,
  to: 1000,
  filters: {},
  columns: ["id"],
  format: "csv",
  compression: "gzip",
  csv: { delimiter: ",", header: true, bom: false },
  timezone: "UTC",
  partMaxRows: 1000,
};
