/**
 * Rate-limit counters shared through Redis, with a fallback: while Redis is unreachable, each API
 * process counts in its own memory (the budget per key is then per process, not shared) instead
 * of failing requests. A Redis that is connected but does not answer (paused, overloaded) counts as
 * away too: each command has a short timeout (service.ts). The Redis client reconnects by itself;
 * the first request after it is back (at most RETRY_AFTER_FAILURE_MS later) counts in Redis again.
 * One log line when Redis goes away and one when it returns; /metrics has `exportd_redis_up` and
 * `exportd_rate_limit_fallbacks_total`.
 */
import type { FastifyRateLimitOptions, FastifyRateLimitStore } from "@fastify/rate-limit";
import LocalStore, { type BuiltInStore } from "@fastify/rate-limit/store/LocalStore.js";
import RedisStore from "@fastify/rate-limit/store/RedisStore.js";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";

/** How long Redis is skipped after a command failed or timed out before one request tries it again. */
const RETRY_AFTER_FAILURE_MS = 1000;

/**
 * Whether the shared counters may be used now, and what the last command said about Redis. A client
 * that is connected but does not answer (a paused or overloaded server) never emits an event, so
 * commands report their own failures and successes here.
 */
export interface RedisHealth {
  /** Connected, and no command failed within the last RETRY_AFTER_FAILURE_MS. */
  ready(): boolean;
  /** A command failed or timed out: Redis counts as away (logged once) until one succeeds. */
  failed(err: unknown): void;
  /** A command answered: Redis is back if it was away. */
  answered(): void;
}

/**
 * Follows the client's connection and its commands: logs each loss and each return once and moves
 * the `exportd_redis_up` gauge.
 */
export function watchRedis(
  redis: Redis,
  logger: Logger,
  metrics: Metrics,
  clock: () => number = Date.now,
): RedisHealth {
  // null until the first connect succeeds or fails: a start with Redis up logs nothing.
  let up: boolean | null = null;
  let failedAt = Number.NEGATIVE_INFINITY;
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
  return {
    ready: () => redis.status === "ready" && clock() - failedAt >= RETRY_AFTER_FAILURE_MS,
    failed(err) {
      failedAt = clock();
      set(false, err);
    },
    answered() {
      failedAt = Number.NEGATIVE_INFINITY;
      set(true);
    },
  };
}

type Counter = BuiltInStore["incr"];

/**
 * Counts in `shared` (Redis) while `health.ready()` holds and its command answers (within the
 * client's commandTimeout), else in `local`.
 */
class FallbackStore implements FastifyRateLimitStore {
  constructor(
    private readonly shared: BuiltInStore,
    private readonly local: BuiltInStore,
    private readonly health: RedisHealth,
    private readonly onFallback: () => void,
  ) {}

  private count(method: "incr" | "read"): Counter {
    return (key, callback, timeWindow, max) => {
      const fallback = () => {
        this.onFallback();
        this.local[method](key, callback, timeWindow, max);
      };
      if (!this.health.ready()) return fallback();
      this.shared[method](
        key,
        (err, result) => {
          if (!err) {
            this.health.answered();
            return callback(null, result);
          }
          this.health.failed(err);
          fallback();
        },
        timeWindow,
        max,
      );
    };
  }

  readonly incr = this.count("incr");
  readonly read = this.count("read");

  child(routeOptions: Parameters<FastifyRateLimitStore["child"]>[0]): FastifyRateLimitStore {
    return new FallbackStore(
      this.shared.child(routeOptions),
      this.local.child(routeOptions),
      this.health,
      this.onFallback,
    );
  }
}

/**
 * A store class for @fastify/rate-limit's `store` option (the plugin builds it with its options):
 * counts in Redis under `nameSpace` while `health.ready()` holds, in process memory otherwise or when
 * a Redis command fails or times out; `onFallback` is called for each request counted in memory.
 */
export function redisWithFallback(
  redis: Redis,
  nameSpace: string,
  health: RedisHealth,
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
        health,
        onFallback,
      );
    }
  };
}
