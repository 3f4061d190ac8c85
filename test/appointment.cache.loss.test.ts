// The slot cache when Redis loses its keys (FLUSHALL, a restart of a Redis that keeps nothing, an
// allkeys-* eviction) while a reader is between its PostgreSQL read and its fill: the reader's old
// version must never become the version everyone compares with. Runs against a Redis server of the
// test's own, since it flushes it.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SlotCacheOptions } from "../src/appointment/slot-cache.ts";
import { CacheTier, SlotStatus } from "../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { type ClinicFixture, makeClinic } from "./support/fixtures.ts";
import { type OwnRedis, startOwnRedis } from "./support/own-redis.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

/** Holds a reader after its PostgreSQL read and before its fill, while armed. */
class Gate {
  private armed = false;
  private held = false;
  private open: (() => void) | undefined;

  wrap = (load: SlotCacheOptions["loadFromDb"]): SlotCacheOptions["loadFromDb"] => {
    return async (clinicId, date) => {
      const day = await load(clinicId, date);
      if (this.armed) {
        this.armed = false;
        this.held = true;
        await new Promise<void>((resolve) => {
          this.open = resolve;
        });
      }
      return day;
    };
  };

  arm() {
    this.armed = true;
    this.held = false;
  }
  get holding() {
    return this.held;
  }
  release() {
    this.held = false;
    this.open?.();
  }
}

let own: OwnRedis;
let pool: pg.Pool;
let fx: ClinicFixture;
const gate = new Gate();
const instances: Instance[] = [];
let a: Instance;
let b: Instance;
let c: Instance;
const dates = ["2031-09-01", "2031-09-02", "2031-09-03", "2031-09-04", "2031-09-05"];
let cfg: ReturnType<typeof testConfig>;

beforeAll(async () => {
  own = await startOwnRedis();
  cfg = { ...testConfig("cacheloss", { SLOT_CACHE_VERSION_TTL_SECONDS: "3600" }), REDIS_URL: own.url };
  await resetState(cfg);
  // No pub/sub anywhere: only the version check may keep reads fresh.
  a = await startInstance(cfg, undefined, "loss-a", { pubsub: false, wrapLoadFromDb: gate.wrap });
  b = await startInstance(cfg, undefined, "loss-b", { pubsub: false });
  c = await startInstance(cfg, undefined, "loss-c", { pubsub: false });
  instances.push(a, b, c);
  pool = testPool(cfg);
  fx = await makeClinic(pool, dates, 4);
});
afterAll(async () => {
  await pool?.end();
  for (const i of instances) await stopInstance(i);
  await own?.stop();
});

const list = (i: Instance, date: string) =>
  callUnary(i.client.listSlots.bind(i.client), { clinicId: fx.clinicId, date, practitionerId: "" }, 5_000);

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A on a held read of `date` (its PostgreSQL read done, its fill not yet), a booking on B
 * acknowledged, Redis flushed, A released: every read afterwards, on every instance, shows the slot
 * booked.
 */
async function heldReaderBookFlush(date: string, slotIndex: number, sendAToDb: () => Promise<void>) {
  const slot = fx.days.get(date)![slotIndex]!;
  // C warms both its LRU and the Redis entry with the day as it is now (slot free).
  await list(c, date);
  await until(async () => (await list(c, date)).tier === CacheTier.CACHE_TIER_LRU, "C serving from its LRU");
  await sendAToDb();
  gate.arm();
  const held = list(a, date);
  try {
    await until(() => gate.holding, "A held between its PostgreSQL read and its fill");
    await callUnary(
      b.client.book.bind(b.client),
      { slotId: slot.id, patientId: randomUUID(), idempotencyKey: "" },
      5_000,
    );
    await own.flushAll();
  } finally {
    gate.release();
  }
  // A's own read started before the booking was acknowledged: either answer is allowed.
  await held;
  for (let n = 0; n < 5; n++) {
    for (const i of [c, b, a]) {
      const r = await list(i, date);
      expect(
        r.slots.find((s) => s.id === slot.id)?.status,
        `read ${n} on ${i === a ? "A" : i === b ? "B" : "C"}`,
      ).toBe(SlotStatus.SLOT_STATUS_BOOKED);
    }
  }
}

describe("slot cache after Redis loses its keys", () => {
  it("version key already lost when A reads: A's fill after book + FLUSHALL cannot make C serve the slot free", async () => {
    // A finds no version key and goes to PostgreSQL.
    await heldReaderBookFlush(dates[0]!, 0, () => own.flushAll());
  });

  it("A reads after a write made the entries stale: its late fill cannot make C serve the slot free", async () => {
    const date = dates[1]!;
    // Another slot of the day booked: the Redis entry is gone and A goes to PostgreSQL.
    await heldReaderBookFlush(date, 1, async () => {
      await callUnary(
        b.client.book.bind(b.client),
        { slotId: fx.days.get(date)![3]!.id, patientId: randomUUID(), idempotencyKey: "" },
        5_000,
      );
    });
  });

  it("a booking acknowledged while A re-establishes a lost key (no second loss): the key takes the booking's version", async () => {
    const date = dates[3]!;
    const slot = fx.days.get(date)![0]!;
    await list(c, date);
    await own.flushAll();
    gate.arm();
    const held = list(a, date);
    try {
      await until(() => gate.holding, "A held between its PostgreSQL read and its fill");
      await callUnary(
        b.client.book.bind(b.client),
        { slotId: slot.id, patientId: randomUUID(), idempotencyKey: "" },
        5_000,
      );
    } finally {
      gate.release();
    }
    await held;
    const r = await pool.query<{ version: string }>(
      "SELECT version FROM slot_versions WHERE clinic_id = $1 AND local_date = $2",
      [fx.clinicId, date],
    );
    const redis = new Redis(own.url);
    try {
      const vKey = `${cfg.REDIS_KEY_PREFIX}slots:v:${fx.clinicId}:${date}`;
      // A re-established the key from its own PostgreSQL read, raised by the booking's bump.
      expect(await redis.get(vKey)).toBe(r.rows[0]!.version);
      // Version keys expire (SLOT_CACHE_VERSION_TTL_SECONDS); an expired one is a lost one.
      const ttl = await redis.ttl(vKey);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(3600);
    } finally {
      redis.disconnect();
    }
    for (const i of [c, b, a]) {
      expect((await list(i, date)).slots.find((s) => s.id === slot.id)?.status).toBe(
        SlotStatus.SLOT_STATUS_BOOKED,
      );
    }
  });

  it("after a flush the day is cached again (from PostgreSQL's version) and stays right", async () => {
    const date = dates[2]!;
    await list(c, date);
    await own.flushAll();
    await list(b, date);
    await until(async () => (await list(c, date)).tier !== CacheTier.CACHE_TIER_DB, "cache tiers back");
    const slot = fx.days.get(date)![2]!;
    await callUnary(
      a.client.book.bind(a.client),
      { slotId: slot.id, patientId: randomUUID(), idempotencyKey: "" },
      5_000,
    );
    for (const i of [a, b, c]) {
      expect((await list(i, date)).slots.find((s) => s.id === slot.id)?.status).toBe(
        SlotStatus.SLOT_STATUS_BOOKED,
      );
    }
  });

  it("a version key that holds neither a version nor a claim is dropped by the next bump, not trusted", async () => {
    const date = dates[4]!;
    const slot = fx.days.get(date)![0]!;
    await list(c, date);
    const redis = new Redis(own.url);
    try {
      const vKey = `${cfg.REDIS_KEY_PREFIX}slots:v:${fx.clinicId}:${date}`;
      await redis.set(vKey, "garbage");
      await callUnary(
        b.client.book.bind(b.client),
        { slotId: slot.id, patientId: randomUUID(), idempotencyKey: "" },
        5_000,
      );
      expect(await redis.get(vKey)).not.toBe("garbage");
    } finally {
      redis.disconnect();
    }
    for (const i of [c, b, a]) {
      expect((await list(i, date)).slots.find((s) => s.id === slot.id)?.status).toBe(
        SlotStatus.SLOT_STATUS_BOOKED,
      );
    }
  });
});
