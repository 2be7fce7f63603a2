/** What a configured SQL dataset offers clients: its descriptor, built from the config file's entry. */
import type { DatasetConfig } from "../../config/file.js";
import type { DatasetDescriptor } from "../../domain/dataset.js";

export function sqlDescriptor(dataset: DatasetConfig): DatasetDescriptor {
  return {
    name: dataset.name,
    description: dataset.description,
    columns: dataset.columns.map((c) => ({ name: c.name, type: c.type, description: c.description })),
    filters: dataset.filters.map((f) => ({ name: f.name, type: f.type, description: f.description })),
    formats: dataset.formats,
    limits: dataset.limits,
    plans: dataset.plans,
  };
}

/** The configured columns a request chose, in the request's order. */
export function chosenColumns(dataset: DatasetConfig, names: string[]): DatasetConfig["columns"] {
  const byName = new Map(dataset.columns.map((c) => [c.name, c]));
  return names.map((name) => {
    const column = byName.get(name);
    if (!column) throw new Error(`column ${name} is not in dataset ${dataset.name}`);
    return column;
  });
}
