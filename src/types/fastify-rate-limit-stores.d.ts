/**
 * @fastify/rate-limit's two built-in stores, which its package ships but does not type
 * (store/LocalStore.js, store/RedisStore.js). exportd composes them in http/shared-rate-limits.ts.
 */
declare module "@fastify/rate-limit/store/*.js" {
  import type { FastifyRateLimitStore } from "@fastify/rate-limit";

  export interface BuiltInStore extends FastifyRateLimitStore {
    /** Reads a key's count without counting the request. */
    read(
      key: string,
      callback: (error: Error | null, result?: { current: number; ttl: number }) => void,
      timeWindow: number,
      max: number,
    ): void;
    child(routeOptions: Parameters<FastifyRateLimitStore["child"]>[0]): BuiltInStore;
  }
  const Store: new (
    continueExceeding: boolean,
    exponentialBackoff: boolean,
    ...rest: unknown[]
  ) => BuiltInStore;
  export default Store;
}
