// Owns the three-tier slot cache: in-process LRU → Redis → PostgreSQL, for (clinic, date) slot sets.
//
// The rule it keeps: a read that starts after a booking was acknowledged never shows that slot
// free, on any instance. How:
// - every entry carries the version of its (clinic, date) set; PostgreSQL bumps the version in the
//   same transaction as the booking;
// - after commit and before the reply, the writer raises the Redis version key (never lowers it),
//   deletes the Redis entry and publishes an invalidation (one script, one round trip);
// - a reader first reads the Redis version key; an LRU or Redis entry is served only if its version
//   equals it; no version key, or Redis unreachable → PostgreSQL, which is never wrong;
// - an entry filled from PostgreSQL carries the version read in the same statement as its rows, so
//   a write racing the fill leaves it stale at once.
// Pub/sub only frees memory early on other instances; correctness never depends on its delivery.

import type { Redis } from "ioredis";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { counter, gauge } from "../shared/metrics.ts";
import type { DaySlots, SlotSetChange } from "./repo.ts";

export type Tier = "lru" | "redis" | "db";

export interface SlotCacheOptions {
  redis: Redis;
  subscriber?: Redis;
  keyPrefix: string;
  lruEntriesMax: number;
  lruTtlMs: number;
  redisTtlSeconds: number;
  evictionLogSample: number;
  instance: string;
  log: Logger;
  loadFromDb: (clinicId: string, date: string) => Promise<DaySlots>;
}

export interface CacheStats {
  lruHits: number;
  lruMisses: number;
  redisHits: number;
  redisMisses: number;
  dbReads: number;
  redisErrors: number;
  evictions: number;
  evictionsLogged: number;
}

const lookups = counter("medisync_slot_cache_lookups_total", "slot cache lookups by tier and result", [
  "instance",
  "tier",
  "result",
]);
const evictions = counter("medisync_slot_cache_evictions_total", "LRU evictions by reason", [
  "instance",
  "reason",
]);
const redisErrors = counter("medisync_slot_cache_redis_errors_total", "failed Redis operations", [
  "instance",
  "op",
]);
const pendingGauge = gauge("medisync_slot_cache_invalidations_pending", "invalidations waiting for Redis", [
  "instance",
]);

/** Sets the version key if absent, then stores the entry only if it is of the current version. */
const FILL_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if not cur then redis.call('SET', KEYS[1], ARGV[1]); cur = ARGV[1] end
if tonumber(cur) == tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return cur`;

/** Raises the version key (never lowers it), drops the entry and tells the other instances. */
const BUMP_SCRIPT = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1`;

/** Invalidations that could not reach Redis are retried in the background, at most this many kept. */
const pendingInvalidationsMax = 10_000;
const pendingRetryMs = 100;
const invalidateAttemptsMax = 3;

interface Entry {
  version: number;
  day: DaySlots;
}

export class SlotCache {
  readonly stats: CacheStats = {
    lruHits: 0,
    lruMisses: 0,
    redisHits: 0,
    redisMisses: 0,
    dbReads: 0,
    redisErrors: 0,
    evictions: 0,
    evictionsLogged: 0,
  };
  private readonly lru: LRUCache<string, Entry>;
  private readonly pending = new Map<string, SlotSetChange>();
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly channel: string;

  constructor(private readonly o: SlotCacheOptions) {
    this.channel = `${o.keyPrefix}slots:invalidate`;
    this.lru = new LRUCache<string, Entry>({
      max: o.lruEntriesMax,
      ttl: o.lruTtlMs,
      updateAgeOnGet: false,
      disposeAfter: (_value, key, reason) => {
        if (reason !== "evict" && reason !== "expire") return;
        this.stats.evictions++;
        evictions.inc({ instance: o.instance, reason });
        if (o.evictionLogSample >= 1 || Math.random() < o.evictionLogSample) {
          this.stats.evictionsLogged++;
          o.log.info({ event: "cache_eviction", tier: "lru", key, reason }, "slot cache eviction");
        }
      },
    });
  }

  /** Subscribes to invalidations from other instances. */
  async start(): Promise<void> {
    const sub = this.o.subscriber;
    if (!sub) return;
    sub.on("message", (channel: string, key: string) => {
      if (channel === this.channel) this.lru.delete(key);
    });
    await sub.subscribe(this.channel);
  }

  async stop(): Promise<void> {
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.retryTimer = undefined;
  }

  get lruSize(): number {
    return this.lru.size;
  }

  async read(clinicId: string, date: string): Promise<{ day: DaySlots; tier: Tier }> {
    const key = `${clinicId}:${date}`;
    const vKey = this.versionKey(key);
    let current: number | undefined;
    try {
      const v = await this.o.redis.get(vKey);
      current = v === null ? undefined : Number(v);
    } catch {
      this.redisFailed("get_version");
      return this.fromDb(clinicId, date, key, false);
    }
    if (current !== undefined) {
      const hit = this.lru.get(key);
      if (hit && hit.version === current) {
        this.count("lru", "hit");
        return { day: hit.day, tier: "lru" };
      }
      this.count("lru", "miss");
      try {
        const raw = await this.o.redis.get(this.dataKey(key));
        if (raw !== null) {
          const day = JSON.parse(raw) as DaySlots;
          if (day.version === current) {
            this.count("redis", "hit");
            this.lru.set(key, { version: day.version, day });
            return { day, tier: "redis" };
          }
        }
        this.count("redis", "miss");
      } catch {
        this.redisFailed("get_data");
        return this.fromDb(clinicId, date, key, false);
      }
    } else {
      this.count("lru", "miss");
      this.count("redis", "miss");
    }
    return this.fromDb(clinicId, date, key, true);
  }

  /**
   * Called by a writer after its transaction committed and before it replies. Resolves false when
   * Redis could not be told: then another instance that still reaches Redis could serve an entry of
   * the old version, so a booking must not be acknowledged (see service.ts). The change is retried
   * in the background until Redis takes it.
   */
  async invalidate(changes: SlotSetChange[]): Promise<boolean> {
    let all = true;
    for (const ch of changes) {
      const key = `${ch.clinicId}:${ch.date}`;
      this.lru.delete(key);
      let done = false;
      for (let attempt = 1; attempt <= invalidateAttemptsMax && !done; attempt++) {
        done = await this.bump(key, ch.version);
      }
      if (!done) {
        all = false;
        this.defer(key, ch);
      }
    }
    return all;
  }

  private async bump(key: string, version: number): Promise<boolean> {
    try {
      await this.o.redis.eval(
        BUMP_SCRIPT,
        3,
        this.versionKey(key),
        this.dataKey(key),
        this.channel,
        version,
        key,
      );
      return true;
    } catch {
      this.redisFailed("bump");
      return false;
    }
  }

  /** Redis could not be told: keep retrying in the background until the version is raised. */
  private defer(key: string, ch: SlotSetChange): void {
    const prev = this.pending.get(key);
    if (!prev || prev.version < ch.version) this.pending.set(key, ch);
    if (this.pending.size > pendingInvalidationsMax) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
      this.o.log.error({ pendingInvalidationsMax }, "pending invalidations overflowed; oldest dropped");
    }
    pendingGauge.set({ instance: this.o.instance }, this.pending.size);
    this.o.log.error(
      { event: "invalidation_deferred", key, version: ch.version },
      "could not invalidate in Redis",
    );
    this.retryTimer ??= setInterval(() => void this.retryPending(), pendingRetryMs);
  }

  private async retryPending(): Promise<void> {
    for (const [key, ch] of [...this.pending]) {
      if (!(await this.bump(key, ch.version))) return;
      if (this.pending.get(key) === ch) this.pending.delete(key);
    }
    pendingGauge.set({ instance: this.o.instance }, this.pending.size);
    if (this.pending.size === 0 && this.retryTimer) {
      clearInterval(this.retryTimer);
      this.retryTimer = undefined;
      this.o.log.info({ event: "invalidations_flushed" }, "deferred invalidations reached Redis");
    }
  }

  private async fromDb(clinicId: string, date: string, key: string, fill: boolean) {
    const day = await this.o.loadFromDb(clinicId, date);
    this.stats.dbReads++;
    lookups.inc({ instance: this.o.instance, tier: "db", result: "hit" });
    if (fill) {
      this.lru.set(key, { version: day.version, day });
      try {
        await this.o.redis.eval(
          FILL_SCRIPT,
          2,
          this.versionKey(key),
          this.dataKey(key),
          day.version,
          JSON.stringify(day),
          this.o.redisTtlSeconds,
        );
      } catch {
        this.redisFailed("fill");
      }
    }
    return { day, tier: "db" as const };
  }

  private count(tier: "lru" | "redis", result: "hit" | "miss") {
    if (tier === "lru") result === "hit" ? this.stats.lruHits++ : this.stats.lruMisses++;
    else result === "hit" ? this.stats.redisHits++ : this.stats.redisMisses++;
    lookups.inc({ instance: this.o.instance, tier, result });
  }

  private redisFailed(op: string) {
    this.stats.redisErrors++;
    redisErrors.inc({ instance: this.o.instance, op });
  }

  private versionKey(key: string) {
    return `${this.o.keyPrefix}slots:v:${key}`;
  }

  private dataKey(key: string) {
    return `${this.o.keyPrefix}slots:d:${key}`;
  }
}
