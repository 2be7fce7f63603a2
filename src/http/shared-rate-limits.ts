/**
 * Rate-limit counters shared through Redis, with a fallback: while Redis is unreachable, each API
 * process counts in its own memory (the budget per key is then per process, not shared) instead
 * of failing requests. The Redis client reconnects by itself; the first request after it is back
 * counts in Redis again. One log line when Redis goes away and one when it returns; /metrics has
 * `exportd_redis_up` and `exportd_rate_limit_fallbacks_total`.
 */
import type { FastifyRateLimitOptions, FastifyRateLimitStore } from "@fastify/rate-limit";
import LocalStore, { type BuiltInStore } from "@fastify/rate-limit/store/LocalStore.js";
import RedisStore from "@fastify/rate-limit/store/RedisStore.js";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";

/**
 * Follows the client's connection: logs each loss and each return once and moves the
 * `exportd_redis_up` gauge. Returns whether Redis is ready right now.
 */
export function watchRedis(redis: Redis, logger: Logger, metrics: Metrics): () => boolean {
  // null until the first connect succeeds or fails: a start with Redis up logs nothing.
  let up: boolean | null = null;
  const set = (next: boolean, err?: unknown) => {
    if (up === next) return;
    if (next && up === false) logger.info("Redis reachable again: rate limits are shared across processes");
    if (!next)
      logger.warn({ err }, "Redis unavailable: rate limits are counted per process until it returns");
    up = next;
    metrics.redisUp(next);
  };
  redis.on("ready", () => set(true));
  // "reconnecting" rather than "close": a close on shutdown (disconnect) is no outage.
  redis.on("error", (err) => set(false, err));
  redis.on("reconnecting", () => set(false));
  metrics.redisUp(redis.status === "ready");
  return () => redis.status === "ready";
}

type Counter = BuiltInStore["incr"];

/** Counts in `shared` (Redis) while `ready()` holds and its command succeeds, else in `local`. */
class FallbackStore implements FastifyRateLimitStore {
  constructor(
    private readonly shared: BuiltInStore,
    private readonly local: BuiltInStore,
    private readonly ready: () => boolean,
    private readonly onFallback: () => void,
  ) {}

  private count(method: "incr" | "read"): Counter {
    return (key, callback, timeWindow, max) => {
      const fallback = () => {
        this.onFallback();
        this.local[method](key, callback, timeWindow, max);
      };
      if (!this.ready()) return fallback();
      this.shared[method](key, (err, result) => (err ? fallback() : callback(null, result)), timeWindow, max);
    };
  }

  readonly incr = this.count("incr");
  readonly read = this.count("read");

  child(routeOptions: Parameters<FastifyRateLimitStore["child"]>[0]): FastifyRateLimitStore {
    return new FallbackStore(
      this.shared.child(routeOptions),
      this.local.child(routeOptions),
      this.ready,
      this.onFallback,
    );
  }
}

/**
 * A store class for @fastify/rate-limit's `store` option (the plugin builds it with its options):
 * counts in Redis under `nameSpace` while `ready()` holds, in process memory otherwise or when a
 * Redis command fails; `onFallback` is called for each request counted in memory.
 */
export function redisWithFallback(
  redis: Redis,
  nameSpace: string,
  ready: () => boolean,
  onFallback: () => void,
): new (
  options: FastifyRateLimitOptions,
) => FastifyRateLimitStore {
  return class extends FallbackStore {
    constructor(options: FastifyRateLimitOptions) {
      // The plugin passes its merged settings; these two are always booleans there.
      const { continueExceeding, exponentialBackoff } = options as {
        continueExceeding: boolean;
        exponentialBackoff: boolean;
      };
      super(
        new RedisStore(continueExceeding, exponentialBackoff, redis, nameSpace),
        new LocalStore(continueExceeding, exponentialBackoff),
        ready,
        onFallback,
      );
    }
  };
}
