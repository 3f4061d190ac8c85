// The service registry against a real Redis (the shared one, under a key prefix of this file's
// own; and a Redis of the test's own where it must die): an entry nobody refreshes expires and is
// pruned, a refreshed one stays, a withdrawn one goes at once, a watcher follows the changes and
// keeps its last list while Redis is away, logging it once.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type OwnRedis, startOwnRedis } from "../../test/support/own-redis.ts";
import { captureLogger, REDIS_URL, testName } from "../../test/support/services.ts";
import { createLogger } from "./logger.ts";
import { createRedis } from "./redis.ts";
import {
  announce,
  listInstances,
  register,
  registryKeys,
  ServiceWatcher,
  withdraw,
} from "./service-registry.ts";

const silent = createLogger({ service: "test", level: "silent" });
let redis: Redis;
/** A prefix per test: no test sees another's entries. */
const prefix = () => `test-${testName("registry")}-${randomUUID().slice(0, 8)}:`;

async function until(cond: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const ids = async (keyPrefix: string, service = "appointment") =>
  (await listInstances({ redis, keyPrefix }, service)).instances.map((i) => i.id);

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});
afterAll(() => redis.disconnect());

describe("service registry", { timeout: 60_000 }, () => {
  it("lists an announced instance, then drops and prunes it once nobody refreshes it", async () => {
    const keyPrefix = prefix();
    const ttlMs = 600;
    await announce({ redis, keyPrefix }, "appointment", entry("a-1", "10.0.0.1:50051"), ttlMs);
    await announce({ redis, keyPrefix }, "appointment", entry("a-2", "10.0.0.2:50051"), 60_000);
    const first = (await listInstances({ redis, keyPrefix }, "appointment")).instances;
    expect(first.map((i) => [i.id, i.address])).toEqual([
      ["a-1", "10.0.0.1:50051"],
      ["a-2", "10.0.0.2:50051"],
    ]);
    expect(first[0]!.expiresInMs).toBeLessThanOrEqual(ttlMs);
    // Other services' entries are their own.
    expect(await ids(keyPrefix, "medication")).toEqual([]);

    await until(async () => !(await ids(keyPrefix)).includes("a-1"), "a-1 expired");
    expect(await ids(keyPrefix)).toEqual(["a-2"]);
    // Pruned from both keys by that read, not merely hidden.
    const k = registryKeys(keyPrefix, "appointment");
    expect(await redis.zrange(k.expiry, "0", "-1")).toEqual(["a-2"]);
    expect(await redis.hkeys(k.info)).toEqual(["a-2"]);
    await withdraw({ redis, keyPrefix }, "appointment", "a-2");
    expect(await ids(keyPrefix)).toEqual([]);
  });

  it("keys of a service whose instances are all gone expire with them", async () => {
    const keyPrefix = prefix();
    await announce({ redis, keyPrefix }, "notification", entry("n-1", "h:1"), 400);
    const k = registryKeys(keyPrefix, "notification");
    expect(await redis.pttl(k.expiry)).toBeGreaterThan(0);
    expect(await redis.pttl(k.info)).toBeGreaterThan(0);
    await until(async () => (await redis.exists(k.expiry, k.info)) === 0, "registry keys expired");
  });

  it("a registered instance stays listed across many TTLs while it refreshes, and goes at stop()", async () => {
    const keyPrefix = prefix();
    const ttlMs = 1_500;
    const reg = register({
      redis,
      keyPrefix,
      service: "appointment",
      id: "a-live",
      address: "127.0.0.1:50051",
      ttlMs,
      log: silent,
    });
    await until(async () => (await ids(keyPrefix)).includes("a-live"), "registered");
    // Three TTLs: without its refreshes the entry would be gone twice over.
    const endAt = Date.now() + 3 * ttlMs;
    let reads = 0;
    while (Date.now() < endAt) {
      expect(await ids(keyPrefix)).toEqual(["a-live"]);
      reads++;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(reads).toBeGreaterThan(5);
    await reg.stop();
    expect(await ids(keyPrefix)).toEqual([]);
  });

  it("entries that are not ours (bad JSON, bad address, another id) are left out", async () => {
    const keyPrefix = prefix();
    const k = registryKeys(keyPrefix, "appointment");
    await announce({ redis, keyPrefix }, "appointment", entry("good", "h:1"), 60_000);
    for (const [id, info] of [
      ["bad-json", "{"],
      ["bad-address", JSON.stringify(entry("bad-address", "no port"))],
      ["other-id", JSON.stringify(entry("someone-else", "h:2"))],
    ] as const) {
      await redis.zadd(k.expiry, Date.now() + 60_000, id);
      await redis.hset(k.info, id, info);
    }
    const got = await listInstances({ redis, keyPrefix }, "appointment");
    expect(got.instances.map((i) => i.id)).toEqual(["good"]);
    expect(got.malformed).toBe(3);
  });

  it("a watcher follows registrations and expiries", async () => {
    const keyPrefix = prefix();
    const seen: string[][] = [];
    const w = new ServiceWatcher({
      redis,
      keyPrefix,
      service: "medication",
      ttlMs: 600,
      log: silent,
      onChange: (a) => seen.push([...a].sort()),
    });
    w.start();
    try {
      await announce({ redis, keyPrefix }, "medication", entry("m-1", "h:1"), 60_000);
      await announce({ redis, keyPrefix }, "medication", entry("m-2", "h:2"), 600);
      await until(() => w.instances().length === 2, "both seen");
      expect(seen.at(-1)).toEqual(["h:1", "h:2"]);
      // m-2 never refreshes.
      await until(() => w.instances().length === 1, "m-2 dropped");
      expect(seen.at(-1)).toEqual(["h:1"]);
      expect(w.view()).toMatchObject({ service: "medication", source: "redis", stale: false });
      // The last instance withdrawing leaves the last list: an empty one would serve nothing.
      await withdraw({ redis, keyPrefix }, "medication", "m-1");
      await w.refresh();
      expect(w.instances().map((i) => i.id)).toEqual(["m-1"]);
      expect(w.view().stale).toBe(true);
    } finally {
      w.stop();
    }
  });

  describe("while Redis is away", () => {
    let own: OwnRedis;
    beforeAll(async () => {
      own = await startOwnRedis();
    }, 30_000);
    afterAll(() => own?.stop(), 30_000);

    it("a watcher keeps its last list and logs once; the instance registers again when it is back", async () => {
      const keyPrefix = prefix();
      const ttlMs = 900;
      const conn = (name: string, log = silent) =>
        createRedis({ url: own.url, commandTimeoutMs: 250, log, name });
      const instanceRedis = conn("instance");
      const { log, lines } = captureLogger("gateway");
      const watcherRedis = conn("watcher", log);
      const reg = register({
        redis: instanceRedis,
        keyPrefix,
        service: "appointment",
        id: "a-1",
        address: "127.0.0.1:50051",
        ttlMs,
        log: silent,
      });
      const changes: string[][] = [];
      const w = new ServiceWatcher({
        redis: watcherRedis,
        keyPrefix,
        service: "appointment",
        ttlMs,
        log,
        onChange: (a) => changes.push([...a]),
      });
      w.start();
      try {
        await until(() => w.instances().length === 1, "seen before the outage");
        await own.kill();
        await until(() => w.view().stale, "a failed read noticed");
        const unreachable = () => lines.filter((l) => String(l.msg).startsWith("registry unreachable"));
        // Well past the TTL and several polls later: still the last list, one log line.
        const endAt = Date.now() + 3 * ttlMs;
        while (Date.now() < endAt) {
          await w.refresh();
          expect(w.instances().map((i) => i.address)).toEqual(["127.0.0.1:50051"]);
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(unreachable()).toHaveLength(1);
        expect(changes).toEqual([["127.0.0.1:50051"]]);
        // Back, empty (it kept nothing): the instance registers again and the watcher reads it fresh.
        await own.start();
        await until(async () => {
          await w.refresh();
          return !w.view().stale && w.instances().length === 1;
        }, "registered again and read");
        expect(lines.some((l) => l.msg === "registry reachable again")).toBe(true);
        expect(changes).toEqual([["127.0.0.1:50051"]]);
      } finally {
        w.stop();
        await reg.stop();
        instanceRedis.disconnect();
        watcherRedis.disconnect();
      }
    });
  });
});

function entry(id: string, address: string) {
  return { id, address, startedAt: new Date().toISOString() };
}
