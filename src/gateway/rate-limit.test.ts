// The gateway's rate limits against a real Redis: budgets per principal and per address, shared by
// gateway processes, and still enforced (per process) while Redis is down or paused.
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type OwnRedis, startOwnRedis } from "../../test/support/own-redis.ts";
import { loadConfig } from "../shared/config.ts";
import { AppError, fromGrpcError, problemType, toGrpcError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { registry } from "../shared/metrics.ts";
import { createRedis } from "../shared/redis.ts";
import { problemAnswer } from "./problems.ts";
import {
  addressKey,
  createRateLimits,
  leasePointsOf,
  type RateDecision,
  type RateLimitsPerMinute,
  rateLimitedError,
  rateLimitsFromConfig,
} from "./rate-limit.ts";

const lines: Record<string, unknown>[] = [];
const log = createLogger({
  service: "rate-limit-test",
  level: "info",
  destination: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
});
const quiet = createLogger({ service: "rate-limit-test", level: "silent" });

const sharedUrl = "redis://127.0.0.1:6379";
// The shared Redis is up throughout: a command timeout there would only mean a loaded machine, and
// send decisions to memory (a test of its own below), so these clients wait long for an answer.
const sharedTimeoutMs = 5_000;
const small: RateLimitsPerMinute = { patient: 5, staff: 50, address: 3 };
const prefix = () => `test:rl:${randomUUID().slice(0, 8)}:`;

const opened: Redis[] = [];
function redisAt(url: string, commandTimeoutMs = 250): Redis {
  const r = createRedis({ url, commandTimeoutMs, log: quiet, name: "rate-limit-test" });
  opened.push(r);
  return r;
}
afterAll(() => {
  for (const r of opened) r.disconnect();
});

async function ready(r: Redis): Promise<void> {
  if (r.status === "ready") return;
  await new Promise<void>((resolve) => r.once("ready", () => resolve()));
}

async function fallbacksOf(policy: string): Promise<number> {
  const m = registry.getSingleMetric("medisync_gateway_rate_limit_fallbacks_total");
  const values = (await m?.get())?.values ?? [];
  return values.find((v) => v.labels.policy === policy)?.value ?? 0;
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("rate limits on the shared Redis", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = redisAt(sharedUrl, sharedTimeoutMs);
    await ready(redis);
  });

  it("one patient gets N requests a minute, then 429 with Retry-After; another patient is unaffected", async () => {
    const limits = createRateLimits({ redis, keyPrefix: prefix(), limits: small, log: quiet });
    const a = randomUUID();
    const b = randomUUID();
    const seen: RateDecision[] = [];
    for (let i = 0; i < 7; i++) seen.push(await limits.consume("principal", a, "patient"));
    expect(seen.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false]);
    expect(seen.slice(0, 5).map((d) => d.remaining)).toEqual([4, 3, 2, 1, 0]);
    for (const d of seen) expect(d).toMatchObject({ policy: "patient", limit: 5 });

    const refused = seen[5] as RateDecision;
    expect(refused.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(refused.retryAfterS).toBeLessThanOrEqual(60);
    expect(refused.resetMs).toBeGreaterThan(0);
    const h = limits.headers(refused);
    expect(h["ratelimit-policy"]).toBe('"patient";q=5;w=60');
    expect(h.ratelimit).toMatch(/^"patient";r=0;t=(\d+)$/);
    expect(Number(h.ratelimit?.split("t=")[1])).toBe(refused.retryAfterS);
    expect(h["retry-after"]).toBe(String(refused.retryAfterS));

    const allowedHeaders = limits.headers(seen[1] as RateDecision);
    expect(allowedHeaders.ratelimit).toMatch(/^"patient";r=3;t=\d+$/);
    expect(allowedHeaders).not.toHaveProperty("retry-after");

    const other = await limits.consume("principal", b, "patient");
    expect(other).toMatchObject({ allowed: true, remaining: 4, limit: 5 });
  });

  it("1,000 requests a minute from one patient at the default limit: exactly the limit pass, the rest get 429", async () => {
    const defaults = rateLimitsFromConfig(loadConfig({}));
    expect(defaults.patient).toBeLessThan(1_000);
    const limits = createRateLimits({ redis, keyPrefix: prefix(), limits: defaults, log: quiet });
    const a = randomUUID();
    const decisions: RateDecision[] = [];
    // Ten concurrent bursts of 100, as a client with parallel connections would send them.
    for (let burst = 0; burst < 10; burst++) {
      decisions.push(
        ...(await Promise.all(Array.from({ length: 100 }, () => limits.consume("principal", a, "patient")))),
      );
    }
    expect(decisions.filter((d) => d.allowed)).toHaveLength(defaults.patient);
    const refused = decisions.filter((d) => !d.allowed);
    expect(refused).toHaveLength(1_000 - defaults.patient);
    for (const d of refused) expect(d.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(await limits.consume("principal", randomUUID(), "patient")).toMatchObject({ allowed: true });
  });

  it("a refused key is refused from memory: the Redis counter stops growing", async () => {
    const keyPrefix = prefix();
    const limits = createRateLimits({ redis, keyPrefix, limits: small, log: quiet });
    const a = randomUUID();
    for (let i = 0; i < 5; i++) expect((await limits.consume("principal", a, "patient")).allowed).toBe(true);
    const key = `${keyPrefix}ratelimit:patient:${a}`;
    expect(await redis.get(key)).toBe("5");
    for (let i = 0; i < 100; i++)
      expect((await limits.consume("principal", a, "patient")).allowed).toBe(false);
    // The fifth request spent the budget; every later one was answered without a Redis call.
    expect(await redis.get(key)).toBe("5");
  });

  it("addresses and staff have budgets of their own", async () => {
    const limits = createRateLimits({ redis, keyPrefix: prefix(), limits: small, log: quiet });
    const id = randomUUID();
    for (let i = 0; i < 5; i++) await limits.consume("principal", id, "patient");
    expect((await limits.consume("principal", id, "patient")).allowed).toBe(false);
    // The same string as an address, or under a staff role, counts elsewhere.
    const asAddress = await limits.consume("address", id);
    expect(asAddress).toMatchObject({ allowed: true, policy: "address", limit: 3, remaining: 2 });
    const asStaff = await limits.consume("principal", id, "pharmacist");
    expect(asStaff).toMatchObject({ allowed: true, policy: "staff", limit: 50, remaining: 49 });
    expect(limits.headers(asStaff)["ratelimit-policy"]).toBe('"staff";q=50;w=60');
    // Clinician, pharmacist and admin share the staff policy; no role, or an unknown one, counts as a patient.
    expect((await limits.consume("principal", randomUUID(), "admin")).policy).toBe("staff");
    expect((await limits.consume("principal", randomUUID())).policy).toBe("patient");
    expect((await limits.consume("principal", randomUUID(), "superuser")).policy).toBe("patient");

    const ip = "203.0.113.9";
    const got = [];
    for (let i = 0; i < 4; i++) got.push((await limits.consume("address", ip)).allowed);
    expect(got).toEqual([true, true, true, false]);
  });

  it("two gateway processes on one Redis share each budget", async () => {
    const keyPrefix = prefix();
    const one = createRateLimits({ redis, keyPrefix, limits: small, log: quiet });
    const other = redisAt(sharedUrl, sharedTimeoutMs);
    await ready(other);
    const two = createRateLimits({ redis: other, keyPrefix, limits: small, log: quiet });
    const a = randomUUID();
    for (let i = 0; i < 3; i++) expect((await one.consume("principal", a, "patient")).allowed).toBe(true);
    expect(await two.consume("principal", a, "patient")).toMatchObject({ allowed: true, remaining: 1 });
    expect(await two.consume("principal", a, "patient")).toMatchObject({ allowed: true, remaining: 0 });
    expect((await one.consume("principal", a, "patient")).allowed).toBe(false);
    expect((await two.consume("principal", a, "patient")).allowed).toBe(false);
  });
});

describe("leased budgets (staff: high limits, few Redis calls)", () => {
  let redis: Redis;
  beforeAll(async () => {
    redis = redisAt(sharedUrl, sharedTimeoutMs);
    await ready(redis);
  });

  it("a process asks Redis once per thousandth of the budget and still reports the exact remainder", async () => {
    const keyPrefix = prefix();
    const limits = createRateLimits({ redis, keyPrefix, limits: { ...small, staff: 100_000 }, log: quiet });
    expect(leasePointsOf(100_000)).toBe(100);
    const sub = randomUUID();
    const seen: RateDecision[] = [];
    for (let i = 0; i < 250; i++) seen.push(await limits.consume("principal", sub, "pharmacist"));
    expect(seen.every((d) => d.allowed)).toBe(true);
    expect(seen.map((d) => d.remaining)).toEqual(Array.from({ length: 250 }, (_, i) => 100_000 - 1 - i));
    // Three leases of 100 were taken: 300 counted in Redis for 250 handed out.
    expect(await redis.get(`${keyPrefix}ratelimit:staff:${sub}`)).toBe("300");
  });

  it("two processes spending one leased budget concurrently hand out exactly the limit", async () => {
    const keyPrefix = prefix();
    const limit = 2_001; // leases of 2, so the last one is granted only in part
    const other = redisAt(sharedUrl, sharedTimeoutMs);
    await ready(other);
    const one = createRateLimits({ redis, keyPrefix, limits: { ...small, staff: limit }, log: quiet });
    const two = createRateLimits({ redis: other, keyPrefix, limits: { ...small, staff: limit }, log: quiet });
    const sub = randomUUID();
    let allowed = 0;
    let refusedBoth = false;
    while (!refusedBoth) {
      const burst = await Promise.all(
        Array.from({ length: 50 }, (_, i) => (i % 2 ? one : two).consume("principal", sub, "clinician")),
      );
      allowed += burst.filter((d) => d.allowed).length;
      refusedBoth = burst.every((d) => !d.allowed);
    }
    expect(allowed).toBe(limit);
  });
});

describe("rate limits while Redis is away", () => {
  let own: OwnRedis;
  beforeAll(async () => {
    own = await startOwnRedis();
  });
  afterAll(async () => {
    await own?.stop();
  });

  it("Redis killed: the memory limiter still limits, nothing throws, one warning; Redis back: used again", async () => {
    const redis = redisAt(own.url);
    await ready(redis);
    const keyPrefix = prefix();
    const limits = createRateLimits({ redis, keyPrefix, limits: small, log, redisPauseMs: 50 });
    const a = randomUUID();
    const key = `${keyPrefix}ratelimit:patient:${a}`;
    expect((await limits.consume("principal", a, "patient")).allowed).toBe(true);
    expect(await redis.get(key)).toBe("1");

    await own.kill();
    await until("the client to see Redis gone", async () => redis.status !== "ready");
    const before = await fallbacksOf("patient");
    const warningsBefore = lines.filter((l) => l.event === "rate-limit-fallback").length;
    const down: RateDecision[] = [];
    for (let i = 0; i < 8; i++) down.push(await limits.consume("principal", a, "patient"));
    // Memory counted what Redis let through before it died (one): the rest of the budget, then 429.
    expect(down.map((d) => d.allowed)).toEqual([true, true, true, true, false, false, false, false]);
    expect(down[4]?.retryAfterS).toBeGreaterThanOrEqual(1);
    expect(await fallbacksOf("patient")).toBe(before + 8);
    // Another patient still has a budget of their own.
    expect((await limits.consume("principal", randomUUID(), "patient")).allowed).toBe(true);
    expect(lines.filter((l) => l.event === "rate-limit-fallback").length - warningsBefore).toBe(1);

    await own.start();
    const b = randomUUID();
    const keyB = `${keyPrefix}ratelimit:patient:${b}`;
    // Poll with real requests until one is counted in Redis again.
    await until("a decision counted in Redis", async () => {
      await limits.consume("principal", b, "patient");
      return redis.status === "ready" && (await redis.get(keyB)) !== null;
    });
    const counted = Number(await redis.get(keyB));
    await limits.consume("principal", b, "patient");
    expect(Number(await redis.get(keyB))).toBe(counted + 1);
    expect(lines.some((l) => l.event === "rate-limit-redis-back")).toBe(true);
  });

  it("Redis slow (paused clients): a command timeout sends decisions to memory, one slow call per pause", async () => {
    const commandTimeoutMs = 100;
    const redis = redisAt(own.url, commandTimeoutMs);
    await ready(redis);
    const admin = redisAt(own.url);
    await ready(admin);
    const keyPrefix = prefix();
    // A pause far longer than the test's calls take, so every call below falls inside it.
    const limits = createRateLimits({ redis, keyPrefix, limits: small, log: quiet, redisPauseMs: 60_000 });
    const a = randomUUID();
    const key = `${keyPrefix}ratelimit:patient:${a}`;

    await admin.call("CLIENT", "PAUSE", "1000", "ALL");
    const during: RateDecision[] = [];
    for (let i = 0; i < 7; i++) during.push(await limits.consume("principal", a, "patient"));
    expect(during.map((d) => d.allowed)).toEqual([true, true, true, true, true, false, false]);

    // Redis runs what it was sent once the pause ends: only the first call reached it.
    await until("the pause to end", async () => (await admin.get(key).catch(() => null)) !== null);
    expect(await admin.get(key)).toBe("1");
  });

  it("what a process let through while Redis was slow is not given back when Redis returns", async () => {
    // Seen through the gateway under load: commands timing out now and then sent some requests to
    // memory, which Redis never counted, so one patient's 1,000 requests got ~700 through a limit
    // of 600. One process must never let more than the limit through in a window.
    const commandTimeoutMs = 100;
    const redis = redisAt(own.url, commandTimeoutMs);
    await ready(redis);
    // Longer than the pause: its write below waits the pause out.
    const admin = redisAt(own.url, 2_000);
    await ready(admin);
    const limits = createRateLimits({
      redis,
      keyPrefix: prefix(),
      limits: small,
      log: quiet,
      redisPauseMs: 50,
    });
    const a = randomUUID();
    const allowed: boolean[] = [];
    for (let i = 0; i < 2; i++) allowed.push((await limits.consume("principal", a, "patient")).allowed);
    await admin.call("CLIENT", "PAUSE", "300", "WRITE");
    // The first call times out (memory answers); the rest of the pause goes to memory too.
    for (let i = 0; i < 2; i++) allowed.push((await limits.consume("principal", a, "patient")).allowed);
    // A write waits out the pause: when it returns, Redis takes writes again.
    await admin.set(`${prefix()}probe`, "1");
    // Redis counts again, but this process already let four through: one more, then 429.
    for (let i = 0; i < 4; i++) allowed.push((await limits.consume("principal", a, "patient")).allowed);
    expect(allowed.filter(Boolean)).toHaveLength(small.patient);
    expect(allowed.slice(0, small.patient).every(Boolean)).toBe(true);
  });
});

describe("the 429 answer", () => {
  it("is problem+json with status 429, the rate-limited type and Retry-After; gRPC RESOURCE_EXHAUSTED", () => {
    const decision: RateDecision = {
      allowed: false,
      policy: "patient",
      limit: 600,
      remaining: 0,
      resetMs: 41_200,
      retryAfterS: 42,
    };
    const err = rateLimitedError(decision);
    const a = problemAnswer(err, "/v1/appointments", "req-1");
    expect(a.status).toBe(429);
    expect(a.headers["content-type"]).toBe("application/problem+json");
    expect(a.headers["retry-after"]).toBe("42");
    const body = JSON.parse(a.body) as Record<string, unknown>;
    expect(body).toMatchObject({
      type: problemType("RATE_LIMITED"),
      title: "Too many requests",
      status: 429,
      code: "RATE_LIMITED",
      instance: "/v1/appointments",
      requestId: "req-1",
    });
    expect(body.type).toBe("https://medisync.dev/problems/rate-limited");

    const wire = toGrpcError(err);
    expect(wire.code).toBe(8); // RESOURCE_EXHAUSTED
    const back = fromGrpcError(wire);
    expect(back).toBeInstanceOf(AppError);
    expect(back.code).toBe("RATE_LIMITED");
    expect(back.meta["retry-after"]).toBe("42");
  });
});

describe("addressKey", () => {
  it("keeps IPv4, unwraps IPv4-mapped IPv6, and groups IPv6 by /64", () => {
    expect(addressKey("203.0.113.9")).toBe("203.0.113.9");
    expect(addressKey("::ffff:203.0.113.9")).toBe("203.0.113.9");
    expect(addressKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:0db8:0001:0002:ffff:eeee:dddd:cccc")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });
});
