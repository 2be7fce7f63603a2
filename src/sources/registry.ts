/** The datasets this exportd serves, by name. */
import type { DatasetDescriptor } from "../domain/dataset.js";
import { DemoEventsDataset } from "./demo-events.js";
import type { Dataset } from "./types.js";

export class DatasetRegistry {
  private readonly byName: Map<string, Dataset>;
  /** Descriptors by name, for request validation in domain/. */
  readonly descriptors: ReadonlyMap<string, DatasetDescriptor>;

  constructor(datasets: Dataset[]) {
    this.byName = new Map(datasets.map((d) => [d.descriptor.name, d]));
    this.descriptors = new Map(datasets.map((d) => [d.descriptor.name, d.descriptor]));
  }

  get(name: string): Dataset | undefined {
    return this.byName.get(name);
  }

  list(): Dataset[] {
    return [...this.byName.values()];
  }
}

export function builtInDatasets(): DatasetRegistry {
  return new DatasetRegistry([new DemoEventsDataset()]);
}
