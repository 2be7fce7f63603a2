/**
 * The metadata store on each engine, and the one the config names. SqliteStore and PostgresStore
 * are the same store (store.ts) on their driver; only PostgreSQL can tell other processes that an
 * export was queued (LISTEN/NOTIFY), so only it has `subscribeToQueue`.
 */
import { EXPORT_CHANGED_CHANNEL, PostgresDriver, WEBHOOK_CHANNEL } from "./dialect/postgres.js";
import { SqliteDriver } from "./dialect/sqlite.js";
import { SqlMetadataStore } from "./store.js";
import type { MetadataStore } from "./types.js";

/** SQLite (embedded). `migrate` is done when it returns: better-sqlite3 is synchronous. */
export class SqliteStore extends SqlMetadataStore {
  constructor(file: string) {
    super(new SqliteDriver(file));
  }
}

/** PostgreSQL (scale-out), with LISTEN/NOTIFY wake-ups. */
export class PostgresStore extends SqlMetadataStore {
  constructor(readonly url: string) {
    super(new PostgresDriver(url));
  }

  /** See JobQueuePort.subscribeToQueue and PostgresDriver.subscribe. */
  subscribeToQueue(
    listener: () => void,
    onConnection?: (connected: boolean, err?: unknown) => void,
  ): Promise<void> {
    return (this.driver as PostgresDriver).subscribe(listener, onConnection);
  }

  /** See ExportsPort.subscribeToExportChanges (migration 9's trigger). */
  subscribeToExportChanges(listener: (exportId: string | null) => void): Promise<void> {
    return (this.driver as PostgresDriver).subscribe(
      (payload) => listener(payload || null),
      undefined,
      EXPORT_CHANGED_CHANNEL,
    );
  }

  /** In-process wake-ups, and NOTIFY from any process (migration 7's trigger). */
  override async subscribeToWebhooks(
    listener: () => void,
    onConnection?: (connected: boolean, err?: unknown) => void,
  ): Promise<void> {
    await super.subscribeToWebhooks(listener);
    return (this.driver as PostgresDriver).subscribe(listener, onConnection, WEBHOOK_CHANNEL);
  }
}

/**
 * The configured metadata store, migrated: PostgreSQL when `databaseUrl` is set, else SQLite at
 * `databaseFile`. Its methods throw StoreUnavailableError while the database cannot serve (the
 * drivers translate their failures with unavailable.ts's storeError).
 */
export async function openMetadataStore(settings: {
  databaseUrl: string | null;
  databaseFile: string;
}): Promise<MetadataStore> {
  const store = settings.databaseUrl
    ? new PostgresStore(settings.databaseUrl)
    : new SqliteStore(settings.databaseFile);
  try {
    await store.migrate();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}
