/**
 * The Content-Type a part is served with, decided from its name (key or download name) alone, so
 * both object stores answer the same: a gzip file is application/gzip whatever it holds (browsers
 * and curl then save it as it is instead of unpacking it), plain parts carry their format's type.
 */
const TYPES_BY_SUFFIX: readonly (readonly [suffix: string, type: string])[] = [
  [".gz", "application/gzip"],
  [".csv", "text/csv; charset=utf-8"],
  [".jsonl", "application/x-ndjson"],
  [".zip", "application/zip"],
];

/** The Content-Type of a stored file by its name's last suffix; application/octet-stream when unknown. */
export function contentTypeOf(name: string): string {
  return TYPES_BY_SUFFIX.find(([suffix]) => name.endsWith(suffix))?.[1] ?? "application/octet-stream";
}
