/** The dataset resource as the API answers it. */
import type { DatasetDescriptor } from "../../domain/dataset.js";

export function presentDataset(d: DatasetDescriptor) {
  return {
    name: d.name,
    description: d.description,
    columns: d.columns.map((c) => ({ name: c.name, type: c.type, description: c.description ?? "" })),
    filters: d.filters.map((f) => ({ name: f.name, type: f.type, description: f.description ?? "" })),
    formats: d.formats,
    limits: {
      max_range_days: d.limits.maxRangeDays,
      max_rows: d.limits.maxRows,
      max_bytes: d.limits.maxBytes,
    },
    plans: d.plans,
  };
}
