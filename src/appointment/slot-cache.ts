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
//   a write racing the fill leaves it stale at once;
// - a fill never creates or lowers the version key; a lost or expired key is re-established from a
//   PostgreSQL read made after the loss (claim, read, establish: see CLAIM_SCRIPT), so a version key
//   is never below the version of an acknowledged booking.
// Pub/sub only frees memory early on other instances; correctness never depends on its delivery.

import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { LRUCache } from "lru-cache";
import type { Logger } from "pino";
import { counter, gauge } from "../shared/metrics.ts";
import { servableSlotVersion, slotDataKey, slotSetKey, slotVersionKey } from "../shared/slot-version.ts";
import type { DaySlots, SlotSetChange } from "./repo.ts";

export type Tier = "lru" | "redis" | "db";

/**
 * Who is asking: a request's logger (its lines carry the request id), read only when a line is
 * written, so a read that logs nothing makes no child logger.
 */
export interface Caller {
  readonly log: Logger;
}

export interface SlotCacheOptions {
  redis: Redis;
  subscriber?: Redis;
  keyPrefix: string;
  lruEntriesMax: number;
  lruTtlMs: number;
  redisTtlSeconds: number;
  /**
   * Lifetime of a version key, well above redisTtlSeconds: it only bounds how many keys Redis
   * keeps; an expired key is re-established from PostgreSQL like a lost one.
   */
  versionTtlSeconds: number;
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

/**
 * Stores an entry filled from PostgreSQL only if the version key holds exactly its version. It never
 * creates, raises or lowers the version key: a reader's version is a memory of the past, and a Redis
 * that lost its keys meanwhile may have lost the bump of a booking acknowledged since.
 */
const FILL_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) == tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3]) end
return cur`;

/**
 * A missing version key is re-established in two steps, so that what it is set to is PostgreSQL's
 * version read after the loss, never a reader's older one:
 * 1. CLAIM: the reader that finds no key sets a claim `p:<token>:0` (only if there is still no key)
 *    before it reads PostgreSQL. A writer's bump that meets a claim raises the number in it.
 * 2. ESTABLISH: after the read, the key becomes max(read version, bumped number) — only if the key is
 *    still this reader's claim. If Redis lost its keys again meanwhile, the claim is gone and nothing
 *    is set; the next reader starts over.
 * Every booking acknowledged before the claim committed before the PostgreSQL read, so the read sees
 * it; every one acknowledged after bumped the claim. So the established version is never below an
 * acknowledged one, and an entry (whose rows are exactly its version's) matches it only when current.
 */
const CLAIM_SCRIPT = `
if redis.call('SET', KEYS[1], 'p:' .. ARGV[1] .. ':0', 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

const ESTABLISH_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local tok, m = string.match(cur, '^p:([^:]+):(%d+)$')
if tok ~= ARGV[1] then return 0 end
local v = math.max(tonumber(ARGV[2]), tonumber(m))
redis.call('SET', KEYS[1], string.format('%d', v), 'EX', ARGV[5])
if v == tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4]) end
return 1`;

/**
 * Raises the version key (never lowers it), drops the entry and tells the other instances. A claim
 * has its number raised instead; a missing key stays missing (readers go to PostgreSQL, and the
 * next claim reads this write): a writer's version is not necessarily the newest either. A key that
 * is neither a number nor a claim is dropped, so it is re-established like a lost one.
 */
const BUMP_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local tok, m = string.match(cur, '^p:([^:]+):(%d+)$')
  if tok then
    if tonumber(ARGV[1]) > tonumber(m) then
      redis.call('SET', KEYS[1], 'p:' .. tok .. ':' .. ARGV[1], 'KEEPTTL')
    end
  elseif not tonumber(cur) then
    redis.call('DEL', KEYS[1])
  elseif tonumber(ARGV[1]) > tonumber(cur) then
    redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
  end
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1`;

/** A claim outlives a slow PostgreSQL read; a reader that died holding one only delays caching. */
const claimTtlMs = 10_000;

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
  /**
   * The logger of the request whose LRU operation is running (evictions are disposed of
   * synchronously inside it), so an eviction line names that request without an async context.
   */
  private opCaller: Caller;
  private readonly self: Caller;
  /** Labelled once: a label lookup on every read is a cost of every read. */
  private readonly lookupCounters: Record<`${"lru" | "redis"}:${"hit" | "miss"}`, { inc(): void }>;

  constructor(private readonly o: SlotCacheOptions) {
    this.channel = `${o.keyPrefix}slots:invalidate`;
    this.self = { log: o.log };
    this.opCaller = this.self;
    const lookup = (tier: string, result: string) => lookups.labels({ instance: o.instance, tier, result });
    this.lookupCounters = {
      "lru:hit": lookup("lru", "hit"),
      "lru:miss": lookup("lru", "miss"),
      "redis:hit": lookup("redis", "hit"),
      "redis:miss": lookup("redis", "miss"),
    };
    this.lru = new LRUCache<string, Entry>({
      max: o.lruEntriesMax,
      ttl: o.lruTtlMs,
      updateAgeOnGet: false,
      disposeAfter: (_value, key, reason) => {
        if (reason !== "evict" && reason !== "expire") return;
        this.stats.evictions++;
        evictions.inc({ instance: o.instance, reason });
        // Deterministic: eviction n is logged when n × sample crosses an integer (the first, then
        // one in 1/sample), so a thrashing cache costs a bounded share of lines, testably.
        const n = this.stats.evictions;
        if (Math.ceil(n * o.evictionLogSample) > Math.ceil((n - 1) * o.evictionLogSample)) {
          this.stats.evictionsLogged++;
          this.opCaller.log.info(
            { event: "cache_eviction", tier: "lru", key, reason },
            "slot cache eviction",
          );
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

  async read(
    clinicId: string,
    date: string,
    caller: Caller = this.self,
  ): Promise<{ day: DaySlots; tier: Tier }> {
    const key = slotSetKey(clinicId, date);
    const vKey = this.versionKey(key);
    // No entry in the LRU: the version and the Redis entry in one MGET (one round trip, and
    // atomic, so the pair is as Redis held it at one moment). An entry: the version alone, the
    // small answer an LRU hit needs; the Redis entry is asked for only if the LRU's is stale.
    const inLru = this.lru.has(key);
    let raw: string | null;
    let data: string | null | undefined;
    try {
      if (inLru) raw = await this.o.redis.get(vKey);
      else [raw = null, data = null] = await this.o.redis.mget(vKey, this.dataKey(key));
    } catch {
      this.redisFailed(inLru ? "get_version" : "mget");
      return this.fromDb(clinicId, date, key, "none", caller);
    }
    const current = servableSlotVersion(raw);
    if (current === undefined) {
      this.count("lru", "miss");
      this.count("redis", "miss");
      // Lost or expired: no entry anywhere may be trusted until PostgreSQL says what is current.
      // A claim (or a value that is no version): answer from PostgreSQL and fill nothing; a
      // writer's bump drops a key that is neither, so it is re-established like a lost one.
      return this.fromDb(clinicId, date, key, raw === null ? "establish" : "none", caller);
    }
    this.opCaller = caller;
    const hit = this.lru.get(key);
    if (hit && hit.version === current) {
      this.count("lru", "hit");
      return { day: hit.day, tier: "lru" };
    }
    this.count("lru", "miss");
    try {
      // Undefined: not asked yet (the LRU had an entry); null: MGET found no entry, PostgreSQL next.
      if (data === undefined) data = await this.o.redis.get(this.dataKey(key));
      if (data !== null) {
        const day = JSON.parse(data) as DaySlots;
        if (day.version === current) {
          this.count("redis", "hit");
          this.opCaller = caller;
          this.lru.set(key, { version: day.version, day });
          return { day, tier: "redis" };
        }
      }
      this.count("redis", "miss");
    } catch {
      this.redisFailed("get_data");
      return this.fromDb(clinicId, date, key, "none", caller);
    }
    return this.fromDb(clinicId, date, key, "fill", caller);
  }

  /**
   * Called by a writer after its transaction committed and before it replies. Resolves false when
   * Redis could not be told: then another instance that still reaches Redis could serve an entry of
   * the old version, so a booking must not be acknowledged (see service.ts). The change is retried
   * in the background until Redis takes it.
   */
  async invalidate(changes: SlotSetChange[], caller: Caller = this.self): Promise<boolean> {
    let all = true;
    for (const ch of changes) {
      const key = slotSetKey(ch.clinicId, ch.date);
      this.lru.delete(key);
      let done = false;
      for (let attempt = 1; attempt <= invalidateAttemptsMax && !done; attempt++) {
        done = await this.bump(key, ch.version);
      }
      if (!done) {
        all = false;
        this.defer(key, ch, caller);
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
        this.o.versionTtlSeconds,
      );
      return true;
    } catch {
      this.redisFailed("bump");
      return false;
    }
  }

  /** Redis could not be told: keep retrying in the background until the version is raised. */
  private defer(key: string, ch: SlotSetChange, caller: Caller): void {
    const prev = this.pending.get(key);
    if (!prev || prev.version < ch.version) this.pending.set(key, ch);
    if (this.pending.size > pendingInvalidationsMax) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
      caller.log.error({ pendingInvalidationsMax }, "pending invalidations overflowed; oldest dropped");
    }
    pendingGauge.set({ instance: this.o.instance }, this.pending.size);
    caller.log.error(
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

  /**
   * A read from PostgreSQL. "fill": the version key is there, store the entry if it is of that
   * version. "establish": the key is missing, claim it first, then set it from this read.
   */
  private async fromDb(
    clinicId: string,
    date: string,
    key: string,
    mode: "none" | "fill" | "establish",
    caller: Caller,
  ) {
    let token: string | undefined;
    if (mode === "establish") token = await this.claim(key);
    const day = await this.o.loadFromDb(clinicId, date);
    this.stats.dbReads++;
    lookups.inc({ instance: this.o.instance, tier: "db", result: "hit" });
    // An entry is served only when its version is the key's, so an older one can only miss.
    this.opCaller = caller;
    if (mode !== "none") this.lru.set(key, { version: day.version, day });
    if (mode === "fill") {
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
    } else if (token !== undefined) {
      try {
        await this.o.redis.eval(
          ESTABLISH_SCRIPT,
          2,
          this.versionKey(key),
          this.dataKey(key),
          token,
          day.version,
          JSON.stringify(day),
          this.o.redisTtlSeconds,
          this.o.versionTtlSeconds,
        );
      } catch {
        this.redisFailed("establish");
      }
    }
    return { day, tier: "db" as const };
  }

  /** The token of this reader's claim on a missing version key, or undefined if it got none. */
  private async claim(key: string): Promise<string | undefined> {
    const token = randomUUID();
    try {
      const got = await this.o.redis.eval(CLAIM_SCRIPT, 1, this.versionKey(key), token, claimTtlMs);
      return got === 1 ? token : undefined;
    } catch {
      this.redisFailed("claim");
      return undefined;
    }
  }

  private count(tier: "lru" | "redis", result: "hit" | "miss") {
    if (tier === "lru") result === "hit" ? this.stats.lruHits++ : this.stats.lruMisses++;
    else result === "hit" ? this.stats.redisHits++ : this.stats.redisMisses++;
    this.lookupCounters[`${tier}:${result}`].inc();
  }

  private redisFailed(op: string) {
    this.stats.redisErrors++;
    redisErrors.inc({ instance: this.o.instance, op });
  }

  private versionKey(key: string) {
    return slotVersionKey(this.o.keyPrefix, key);
  }

  private dataKey(key: string) {
    return slotDataKey(this.o.keyPrefix, key);
  }
}
