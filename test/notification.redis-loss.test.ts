// Redis keeps nothing on disk here: a restart loses the event stream and its consumer group. The
// appointment outbox keeps relayed rows for OUTBOX_RETENTION_SECONDS and its relay replays them
// when it finds the stream lost; the inbox drops what was handled already. Against a Redis of the
// test's own (flushed as a restart would), so the shared one is never touched.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NotificationService, startNotificationService } from "../src/notification/server.ts";
import { createLogger } from "../src/shared/logger.ts";
import { createPool } from "../src/shared/pg.ts";
import {
  bigClinic,
  burst,
  countOf,
  notificationTestConfig,
  resetNotificationState,
  until,
} from "./support/notification.ts";
import { type OwnRedis, startOwnRedis } from "./support/own-redis.ts";
import { type Instance, startInstance, stopInstance, testPool } from "./support/services.ts";

const silent = createLogger({ service: "notification", level: "silent" });
let redis: OwnRedis;
let cfg: ReturnType<typeof notificationTestConfig>;
let appt: Instance;
let apptPool: pg.Pool;
let pool: pg.Pool;
let notif: NotificationService | undefined;

beforeAll(async () => {
  redis = await startOwnRedis();
  cfg = notificationTestConfig("notif_redis_loss", { REDIS_URL: redis.url });
  await resetNotificationState(cfg);
  appt = await startInstance(cfg, undefined, "appointment-loss");
  apptPool = testPool(cfg);
  pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 2);
});
afterAll(async () => {
  await notif?.close();
  await pool?.end();
  await apptPool?.end();
  if (appt) await stopInstance(appt);
  await redis?.stop();
});

describe("Redis loses the stream", () => {
  it("events relayed but not yet consumed when Redis lost them are replayed from the outbox; nothing lost, nothing doubled", async () => {
    // The group exists, then its consumer is down while events are relayed into the stream.
    notif = await startNotificationService({ ...cfg, INSTANCE_ID: "notif-loss" }, silent);
    await notif.close();
    notif = undefined;
    const first = await bigClinic(apptPool, 40);
    const before = await burst(appt, first, { parallel: 4, cancelEvery: 5 });
    await until(
      async () => (await countOf(apptPool, "outbox WHERE relayed_at IS NULL")) === 0,
      "the first events relayed",
    );
    await redis.flushAll();

    // The consumer comes back, and Redis is lost once more in the middle of the next burst.
    notif = await startNotificationService({ ...cfg, INSTANCE_ID: "notif-loss" }, silent);
    const second = await bigClinic(apptPool, 120);
    let flushed = false;
    const after = await burst(appt, second, {
      parallel: 4,
      cancelEvery: 5,
      onProgress: async (done) => {
        if (!flushed && done >= 60) {
          flushed = true;
          await redis.flushAll();
        }
      },
    });
    expect(flushed).toBe(true);
    const events = before + after;
    expect(await countOf(apptPool, "outbox")).toBe(events);
    await until(
      async () => (await countOf(pool, "notifications")) >= events,
      `${events} notifications`,
      60_000,
    );
    await until(
      async () => (await countOf(apptPool, "outbox WHERE relayed_at IS NULL")) === 0,
      "everything relayed",
    );
    expect(await countOf(pool, "notifications")).toBe(events);
    expect(await countOf(pool, "(SELECT DISTINCT event_id FROM notifications) d")).toBe(events);
  }, 180_000);

  it("the stream key alone deleted (its relay's last entry gone): the window is replayed too", async () => {
    const before = await countOf(pool, "notifications");
    await notif!.close();
    notif = undefined;
    const more = await bigClinic(apptPool, 20);
    const events = await burst(appt, more, { parallel: 2, cancelEvery: 100 });
    await until(async () => (await countOf(apptPool, "outbox WHERE relayed_at IS NULL")) === 0, "relayed");
    const { Redis } = await import("ioredis");
    const admin = new Redis(redis.url);
    try {
      await admin.del(`${cfg.REDIS_KEY_PREFIX}events`);
      expect(await admin.exists(`${cfg.REDIS_KEY_PREFIX}events:relay-epoch:appointment`)).toBe(1);
    } finally {
      admin.disconnect();
    }
    notif = await startNotificationService({ ...cfg, INSTANCE_ID: "notif-loss" }, silent);
    await until(async () => (await countOf(pool, "notifications")) === before + events, "the lost events");
    expect(await countOf(pool, "(SELECT DISTINCT event_id FROM notifications) d")).toBe(before + events);
  }, 120_000);
});
