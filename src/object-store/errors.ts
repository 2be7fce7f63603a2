/** An object-store operation failed; the worker reports it as `storage_error`. */
export class StorageError extends Error {
  override readonly cause: unknown;

  constructor(cause: unknown) {
    super(`object store: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "StorageError";
    this.cause = cause;
  }
}

export function toStorageError(err: unknown): StorageError {
  return err instanceof StorageError ? err : new StorageError(err);
}

/** Runs an object-store operation, labelling any failure as a StorageError. */
export async function storageOp<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (err) {
    throw toStorageError(err);
  }
}
