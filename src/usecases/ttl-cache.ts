/**
 * A small per-process cache whose entries live a fixed time. The API keeps hot, rarely changing
 * records here (a tenant's limits, finished exports) for about a second, so a client polling in a
 * tight loop does not cost a database read per request. Bounded: past `max` entries it starts over.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 10_000,
  ) {}

  get(key: string, now: number): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.until > now) return entry.value;
    this.entries.delete(key);
    return undefined;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Keeps `value` for the cache's time, or for `ttlMs` when given (a token until its expiry, say). */
  set(key: string, value: V, now: number, ttlMs = this.ttlMs): void {
    if (this.entries.size >= this.max) this.entries.clear();
    this.entries.set(key, { value, until: now + ttlMs });
  }
}
