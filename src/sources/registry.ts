/** The datasets this exportd serves, by name: the demo dataset and the operator's SQL datasets. */
import pg from "pg";
import type { DatasetConfig, DatasetsConfig, SourceConfig } from "../config/file.js";
import type { BundleDescriptor, DatasetDescriptor } from "../domain/dataset.js";
import { DemoEventsDataset } from "./demo-events.js";
import { PostgresDataset } from "./sql/postgres-dataset.js";
import { SqliteDataset } from "./sql/sqlite-dataset.js";
import type { Dataset } from "./types.js";

export class DatasetRegistry {
  private readonly byName: Map<string, Dataset>;
  /** Descriptors by name, for request validation in domain/. */
  readonly descriptors: ReadonlyMap<string, DatasetDescriptor>;
  /** The config file's bundles by name (`"bundle"` in a create request). */
  readonly bundles: ReadonlyMap<string, BundleDescriptor>;

  constructor(
    datasets: Dataset[],
    private readonly onClose: () => Promise<void> = async () => undefined,
    bundles: readonly BundleDescriptor[] = [],
  ) {
    this.byName = new Map(datasets.map((d) => [d.descriptor.name, d]));
    this.descriptors = new Map(datasets.map((d) => [d.descriptor.name, d.descriptor]));
    this.bundles = new Map(bundles.map((b) => [b.name, b]));
  }

  get(name: string): Dataset | undefined {
    return this.byName.get(name);
  }

  list(): Dataset[] {
    return [...this.byName.values()];
  }

  /** Closes the sources' connection pools. */
  async close(): Promise<void> {
    await this.onClose();
  }
}

/** One connection handle per configured source, shared by its datasets. */
interface OpenSource {
  dataset(config: DatasetConfig): Dataset;
  close(): Promise<void>;
}

const SOURCES: { [T in SourceConfig["type"]]: (source: Extract<SourceConfig, { type: T }>) => OpenSource } = {
  postgres: (source) => {
    // Connections are opened on first use: a database that is down fails exports (retried), not the start.
    // A connect that cannot succeed fails the read (retried with back-off) instead of hanging it.
    const pool = new pg.Pool({
      connectionString: source.url,
      max: source.maxConnections,
      connectionTimeoutMillis: 5000,
      // Probes from 10 s of silence (the system default waits 2 hours) find a peer that vanished
      // (a network partition, a host that died). A server that hangs but still ACKs is caught by
      // the run's stall guard and the create's estimate wait instead: a client-side query_timeout
      // would also cut long COPYs, which pg applies it to as a whole.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    // Connection errors the pool or a client emits on its own (the server restarted, a connection
    // was terminated) would end the process unheard: the pool replaces idle connections, and a
    // read on a checked-out one fails through its query. pg-pool only listens on idle clients.
    const ignore = () => undefined;
    pool.on("error", ignore);
    pool.on("connect", (client) => client.on("error", ignore));
    return { dataset: (config) => new PostgresDataset(config, pool), close: () => pool.end() };
  },
  sqlite: (source) => ({
    dataset: (config) => new SqliteDataset(config, source),
    close: async () => undefined,
  }),
};

function openSource(source: SourceConfig): OpenSource {
  return (SOURCES[source.type] as (s: SourceConfig) => OpenSource)(source);
}

export function buildDatasets(config: DatasetsConfig): DatasetRegistry {
  const sources = new Map(Object.entries(config.sources).map(([name, s]) => [name, openSource(s)]));
  const datasets: Dataset[] = config.demo ? [new DemoEventsDataset()] : [];
  for (const d of config.datasets) {
    const source = sources.get(d.source);
    if (!source) throw new Error(`dataset ${d.name}: no source ${d.source}`);
    datasets.push(source.dataset(d));
  }
  return new DatasetRegistry(
    datasets,
    async () => {
      await Promise.all([...sources.values()].map((s) => s.close()));
    },
    config.bundles ?? [],
  );
}
