// Owns the gateway's rate limits: a per-minute budget per principal (the token's sub, so every token
// of one person shares it) and per client address for requests without a valid token, counted in
// Redis so every gateway process shares one budget (rate-limiter-flexible's fixed window, one Lua
// call per request), and the RateLimit / RateLimit-Policy / Retry-After headers that describe it.
// Redis away or slow never fails a request: each process then limits on its own in memory.
import { isIPv4, isIPv6 } from "node:net";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { Config } from "../shared/config.ts";
import { AppError } from "../shared/errors.ts";
import { counter } from "../shared/metrics.ts";

export type RateKind = "principal" | "address";

/**
 * The budgets, each a number of requests a minute. Patients get a clinic-sized one (a person booking
 * and reading their records makes a few requests a minute; a runaway script makes thousands). Staff
 * tokens front tills, clinic desks and integrations that make many requests on one token (a
 * pharmacy's deducts, the benchmarks), so theirs only stops a runaway client, not work.
 */
export interface RateLimitsPerMinute {
  patient: number;
  staff: number;
  address: number;
}

/** The policy a request is counted under; its name is the one the RateLimit headers carry. */
export type RatePolicy = keyof RateLimitsPerMinute;

export interface RateDecision {
  allowed: boolean;
  policy: RatePolicy;
  /** Requests a window allows under this policy. */
  limit: number;
  /** Requests left in the current window (0 when refused). */
  remaining: number;
  /** Until the current window ends and the budget is whole again. */
  resetMs: number;
  /** Refused only: whole seconds to wait, at least 1. */
  retryAfterS?: number;
}

export interface RateLimits {
  /**
   * Counts one request against the key's budget. Never throws for a Redis outage (the per-process
   * memory limiter answers then). `key` is the token's sub for "principal", the client address
   * (see addressKey) for "address"; `role` picks the principal's policy (patient when absent).
   */
  consume(kind: RateKind, key: string, role?: string): Promise<RateDecision>;
  /** The answer's RateLimit-Policy and RateLimit fields, and Retry-After when refused. */
  headers(decision: RateDecision): Record<string, string>;
  close(): Promise<void>;
}

export interface RateLimitsOptions {
  redis: Redis;
  /** Prefix of every Redis key (REDIS_KEY_PREFIX; tests use their own). */
  keyPrefix: string;
  limits: RateLimitsPerMinute;
  log: Logger;
  /**
   * After Redis failed a call, go straight to memory this long before trying Redis again, so a slow
   * Redis costs one command timeout per pause, not one per request.
   */
  redisPauseMs?: number;
}

export const rateWindowS = 60;
const redisPauseMsDefault = 1_000;

const refusals = counter("medisync_gateway_rate_limited_total", "Requests refused with 429, by policy", [
  "policy",
]);
const fallbacks = counter(
  "medisync_gateway_rate_limit_fallbacks_total",
  "Rate-limit decisions made by the per-process memory limiter because Redis failed or was paused, by policy",
  ["policy"],
);

export function rateLimitsFromConfig(cfg: Config): RateLimitsPerMinute {
  return {
    patient: cfg.RATE_LIMIT_PATIENT_PER_MINUTE,
    staff: cfg.RATE_LIMIT_STAFF_PER_MINUTE,
    address: cfg.RATE_LIMIT_ADDRESS_PER_MINUTE,
  };
}

/**
 * The roles (src/shared/principal.ts) whose tokens get the staff budget. Any other role, or
 * none, counts as a patient: an unknown role falls to the strict side.
 */
const staffRoles: ReadonlySet<string> = new Set(["clinician", "pharmacist", "admin"]);

export function policyOf(kind: RateKind, role: string | undefined): RatePolicy {
  if (kind === "address") return "address";
  return role !== undefined && staffRoles.has(role) ? "staff" : "patient";
}

/**
 * The memory limiter rate-limiter-flexible falls back to when a Redis call fails (its insurance
 * limiter). It marks what it answers, so the caller can tell a memory decision from a Redis one
 * (to count fallbacks and to notice when Redis is back) without a shared flag racing other calls.
 */
class MarkedMemoryLimiter extends RateLimiterMemory {
  readonly answered = new WeakSet<object>();

  override consume(key: string | number, points?: number, options?: object): Promise<RateLimiterRes> {
    return super.consume(key, points, options).then(
      (res) => {
        this.answered.add(res);
        return res;
      },
      (res: unknown) => {
        if (typeof res === "object" && res !== null) this.answered.add(res);
        throw res;
      },
    );
  }
}

interface PolicyLimiter {
  policy: RatePolicy;
  points: number;
  /** Points one Redis call takes for this process to hand out locally (1: every request asks Redis). */
  leasePoints: number;
  redis: RateLimiterRedis;
  memory: MarkedMemoryLimiter;
  /** Leased policies only: what this process holds per key in the current window. */
  leases: Map<string, Lease>;
}

/**
 * Points a process took from Redis in one call and hands out without asking again, until spent or
 * the window ends.
 */
interface Lease {
  left: number;
  /** Redis had less than a lease left: once `left` is spent, refuse until `expiresAt`. */
  last: boolean;
  /** Redis's remaining budget when the lease was taken (others may have spent some since). */
  redisRemaining: number;
  expiresAt: number;
  refill?: Promise<void>;
}

/**
 * A lease is a thousandth of the budget: a staff token at 600,000 a minute asks Redis once every
 * 600 requests (the hot paths stay at memory speed), and N gateway processes together can leave at
 * most N thousandths of it unspent at a window's end. Budgets under 2,000 lease 1: exact.
 */
export function leasePointsOf(limit: number): number {
  return Math.max(1, Math.floor(limit / 1000));
}

const leasesPruneAt = 10_000;

export function createRateLimits(o: RateLimitsOptions): RateLimits {
  const pauseMs = o.redisPauseMs ?? redisPauseMsDefault;
  const limiters = {} as Record<RatePolicy, PolicyLimiter>;
  for (const policy of ["patient", "staff", "address"] as const) {
    const points = o.limits[policy];
    const keyPrefix = `${o.keyPrefix}ratelimit:${policy}`;
    const memory = new MarkedMemoryLimiter({ points, duration: rateWindowS, keyPrefix });
    const redis = new RateLimiterRedis({
      storeClient: o.redis,
      points,
      duration: rateWindowS,
      keyPrefix,
      // Once a key has spent its budget, this process refuses it from memory until the window
      // ends: a client hammering past its limit costs no Redis call.
      inMemoryBlockOnConsumed: points,
      // Disconnected: straight to memory, no command attempted.
      rejectIfRedisNotReady: true,
      insuranceLimiter: memory,
    });
    const leasePoints = leasePointsOf(points);
    limiters[policy] = { policy, points, leasePoints, redis, memory, leases: new Map() };
  }

  // One outage, one warning: set by the first memory decision, cleared by the next Redis one.
  let outage = false;
  let redisPausedUntil = 0;

  /** Takes `want` points for `key`: how many were granted (0: refused), and the store's answer. */
  async function take(
    l: PolicyLimiter,
    key: string,
    want: number,
  ): Promise<{ granted: number; res: RateLimiterRes }> {
    const viaRedis = Date.now() >= redisPausedUntil;
    let res: RateLimiterRes;
    let ok: boolean;
    try {
      res = await (viaRedis ? l.redis.consume(key, want) : l.memory.consume(key, want));
      ok = true;
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) {
        // Neither limiter could answer (not expected: memory does not fail). Let the request
        // through rather than fail it; the budget is a guard, not a correctness rule.
        o.log.error({ err: (err as Error).message }, "rate limiter failed; request allowed");
        return { granted: 1, res: new RateLimiterRes(l.points, rateWindowS * 1000, 0) };
      }
      res = err;
      ok = false;
    }
    noteSource(l, res);
    // Every decision Redis makes is counted in memory too, so what this process let through while
    // Redis was away (memory's count only) still counts once Redis answers again: one process
    // never lets more than the limit through in a window, whichever store answered.
    if (ok && !l.memory.answered.has(res)) {
      try {
        await l.memory.consume(key, want);
      } catch (err) {
        if (!(err instanceof RateLimiterRes)) throw err;
        const left = Math.max(0, l.points - (err.consumedPoints - want));
        return { granted: Math.min(want, left), res: err };
      }
    }
    if (ok) return { granted: want, res };
    // The store counted all `want` points, so a lease that crossed the limit still carries what was
    // left before it (consumed - want < points). An in-memory block says consumed 0: nothing left.
    const before = res.consumedPoints - want;
    const granted = res.consumedPoints > 0 && before < l.points ? l.points - before : 0;
    return { granted, res };
  }

  function noteSource(l: PolicyLimiter, res: RateLimiterRes): void {
    if (l.memory.answered.has(res)) {
      fallbacks.inc({ policy: l.policy });
      if (Date.now() >= redisPausedUntil) redisPausedUntil = Date.now() + pauseMs;
      if (!outage) {
        outage = true;
        o.log.warn({ event: "rate-limit-fallback" }, "Redis unavailable: rate limits counted per process");
      }
    } else if (outage && res.consumedPoints > 0) {
      // consumedPoints > 0: Redis counted this one (an in-memory block answers with 0 and proves nothing).
      outage = false;
      o.log.info({ event: "rate-limit-redis-back" }, "Redis back: rate limits shared again");
    }
  }

  function decision(l: PolicyLimiter, allowed: boolean, remaining: number, resetMs: number): RateDecision {
    const d: RateDecision = {
      allowed,
      policy: l.policy,
      limit: l.points,
      remaining: allowed ? Math.max(0, remaining) : 0,
      resetMs: Math.max(0, resetMs),
    };
    if (!allowed) {
      d.retryAfterS = Math.max(1, Math.ceil(d.resetMs / 1000));
      refusals.inc({ policy: l.policy });
    }
    return d;
  }

  async function leased(l: PolicyLimiter, key: string): Promise<RateDecision> {
    for (;;) {
      const now = Date.now();
      let lease = l.leases.get(key);
      if (lease && lease.expiresAt <= now && !lease.refill) {
        l.leases.delete(key);
        lease = undefined;
      }
      if (lease?.refill) {
        await lease.refill;
        continue;
      }
      if (lease && lease.left > 0) {
        lease.left--;
        return decision(l, true, lease.redisRemaining + lease.left, lease.expiresAt - now);
      }
      if (lease?.last) return decision(l, false, 0, lease.expiresAt - now);
      // No lease, or it is spent: one Redis call for this key; concurrent callers wait on it.
      const fresh: Lease = { left: 0, last: false, redisRemaining: 0, expiresAt: Number.POSITIVE_INFINITY };
      fresh.refill = take(l, key, l.leasePoints).then(({ granted, res }) => {
        fresh.left = granted;
        fresh.last = granted < l.leasePoints;
        fresh.redisRemaining = Math.max(0, res.remainingPoints);
        fresh.expiresAt = Date.now() + Math.max(0, res.msBeforeNext);
        fresh.refill = undefined;
      });
      if (l.leases.size >= leasesPruneAt) prune(l.leases, now);
      l.leases.set(key, fresh);
    }
  }

  return {
    async consume(kind, key, role) {
      const l = limiters[policyOf(kind, role)];
      if (l.leasePoints > 1) return leased(l, key);
      const { granted, res } = await take(l, key, 1);
      return decision(l, granted > 0, res.remainingPoints, res.msBeforeNext);
    },
    headers: rateLimitHeaders,
    async close() {
      // Nothing to release: the Redis connection is the caller's, the memory timers are unref'd.
      for (const l of Object.values(limiters)) l.leases.clear();
    },
  };
}

function prune(leases: Map<string, Lease>, now: number): void {
  for (const [key, lease] of leases) if (!lease.refill && lease.expiresAt <= now) leases.delete(key);
}

/**
 * draft-ietf-httpapi-ratelimit-headers (-10 to -12): `RateLimit-Policy` names the policy with its
 * quota q and window w in seconds; `RateLimit` the same policy with r, the quota left, and t, the
 * seconds until it is whole again. Structured-field strings; no partition key (it would echo the
 * principal or the address back for nothing).
 */
export function rateLimitHeaders(d: RateDecision): Record<string, string> {
  const headers: Record<string, string> = {
    "ratelimit-policy": `"${d.policy}";q=${d.limit};w=${rateWindowS}`,
    ratelimit: `"${d.policy}";r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`,
  };
  if (!d.allowed) headers["retry-after"] = String(d.retryAfterS ?? Math.max(1, Math.ceil(d.resetMs / 1000)));
  return headers;
}

/** The 429 a refused decision answers with; problems.ts copies its retry-after into the header. */
export function rateLimitedError(d: RateDecision): AppError {
  const retryAfterS = d.retryAfterS ?? Math.max(1, Math.ceil(d.resetMs / 1000));
  return new AppError(
    "RATE_LIMITED",
    `more than ${d.limit} requests a minute (${d.policy} limit); retry after ${retryAfterS} s`,
    undefined,
    { "retry-after": String(retryAfterS) },
  );
}

/**
 * The address key of a client: IPv4 as is (an IPv4-mapped IPv6 address too), IPv6 by its /64, the
 * block one host is usually given, so a client cannot get a fresh budget by changing its low bits.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address.slice(0, 64);
  const bare = address.split("%")[0] ?? address;
  const [head = "", tail] = bare.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - left.length - right.length;
  const groups = [...left, ...Array<string>(Math.max(0, missing)).fill("0"), ...right];
  const prefix = groups.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16));
  return `${prefix.join(":")}::/64`;
}
