// Owns Redis connections: fail fast instead of queueing while disconnected, so a Redis outage
// turns into an immediate fallback (to PostgreSQL) rather than a hung request; reconnect forever.
import { Redis } from "ioredis";
import type { Logger } from "pino";

export interface RedisOptions {
  url: string;
  commandTimeoutMs: number;
  log: Logger;
  name: string;
}

const reconnectBackoffMsMax = 2_000;

export function createRedis(opts: RedisOptions): Redis {
  const redis = new Redis(opts.url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1_000),
    retryStrategy: (times) => Math.min(50 * times, reconnectBackoffMsMax),
    lazyConnect: false,
  });
  let up = false;
  redis.on("ready", () => {
    up = true;
    opts.log.info({ redis: opts.name }, "redis connected");
  });
  redis.on("error", (err: Error) => {
    // ioredis emits an error per failed reconnect; log the transition only, not the storm.
    if (up) opts.log.warn({ redis: opts.name, err: err.message }, "redis unreachable");
    up = false;
  });
  return redis;
}

/** A subscriber connection: it may queue its SUBSCRIBE until connected, and resubscribes itself. */
export function createSubscriber(opts: RedisOptions): Redis {
  const sub = new Redis(opts.url, {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    autoResubscribe: true,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1_000),
    retryStrategy: (times) => Math.min(50 * times, reconnectBackoffMsMax),
  });
  sub.on("error", () => undefined);
  return sub;
}
