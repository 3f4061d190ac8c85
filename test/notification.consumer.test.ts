// The notification consumer against the real appointment service, PostgreSQL and Redis: every
// booking and cancellation makes exactly one notification, a redelivered or replayed event makes
// nothing new, two instances share the work without double rows, and a poison entry is
// dead-lettered instead of blocking the group.
import { Redis } from "ioredis";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NotificationService, startNotificationService } from "../src/notification/server.ts";
import { createLogger } from "../src/shared/logger.ts";
import { createPool } from "../src/shared/pg.ts";
import type { ClinicFixture } from "./support/fixtures.ts";
import {
  bigClinic,
  burst,
  countOf,
  notificationTestConfig,
  resetNotificationState,
  until,
} from "./support/notification.ts";
import { type Instance, REDIS_URL, startInstance, stopInstance, testPool } from "./support/services.ts";

const cfg = notificationTestConfig("notif_consumer");
const silent = createLogger({ service: "notification", level: "silent" });
const stream = `${cfg.REDIS_KEY_PREFIX}events`;
let appt: Instance;
let apptPool: pg.Pool;
let pool: pg.Pool;
let redis: Redis;
const services: NotificationService[] = [];

beforeAll(async () => {
  await resetNotificationState(cfg);
  appt = await startInstance(cfg, undefined, "appointment-notif");
  apptPool = testPool(cfg);
  redis = new Redis(REDIS_URL);
  services.push(await startNotificationService({ ...cfg, INSTANCE_ID: "notif-a" }, silent));
  pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 2);
});
afterAll(async () => {
  for (const s of services) await s.close();
  await pool?.end();
  await apptPool?.end();
  redis?.disconnect();
  if (appt) await stopInstance(appt);
});

const outboxEvents = () => countOf(apptPool, "outbox");
const notifications = () => countOf(pool, "notifications");

async function groupInfo(): Promise<{ pending: number; lag: number; entriesRead: number }> {
  const groups = (await redis.call("XINFO", "GROUPS", stream)) as unknown[][];
  const g = groups.map((x) => {
    const m = new Map<string, unknown>();
    for (let i = 0; i + 1 < x.length; i += 2) m.set(String(x[i]), x[i + 1]);
    return m;
  })[0]!;
  return {
    pending: Number(g.get("pending")),
    lag: Number(g.get("lag") ?? 0),
    entriesRead: Number(g.get("entries-read") ?? 0),
  };
}

/** Every event relayed, read by the group and acknowledged. */
async function drained(): Promise<void> {
  await until(async () => {
    const unrelayed = await countOf(apptPool, "outbox WHERE relayed_at IS NULL");
    if (unrelayed > 0) return false;
    const g = await groupInfo();
    return g.pending === 0 && g.lag === 0;
  }, "the group to drain");
}

async function byConsumer(): Promise<Map<string, number>> {
  const r = await pool.query<{ consumer: string; n: number }>(
    "SELECT consumer, count(*)::int AS n FROM inbox GROUP BY consumer ORDER BY consumer",
  );
  return new Map(r.rows.map((x) => [x.consumer, x.n]));
}

describe("notification consumer", () => {
  let fx: ClinicFixture;

  it("every booking and cancellation makes exactly one notification, worded for its patient", async () => {
    fx = await bigClinic(apptPool, 48);
    const events = await burst(appt, fx, { parallel: 8, cancelEvery: 3 });
    expect(events).toBe(48 + 16);
    await until(async () => (await notifications()) === events, `${events} notifications`);
    await drained();
    expect(await notifications()).toBe(events);
    expect(await countOf(pool, "(SELECT DISTINCT event_id FROM notifications) d")).toBe(events);
    expect(await countOf(pool, "notifications WHERE kind = 'appointment-cancelled'")).toBe(16);
    // Each notification belongs to the patient of its appointment, and names clinic and local time.
    const appts = await apptPool.query<{ id: string; patient_id: string }>(
      "SELECT id, patient_id FROM appointments",
    );
    const patientOf = new Map(appts.rows.map((r) => [r.patient_id, r.id]));
    const rows = await pool.query<{ patient_id: string; subject: string; body: string }>(
      "SELECT patient_id::text, subject, body FROM notifications",
    );
    for (const r of rows.rows) {
      expect(patientOf.has(r.patient_id)).toBe(true);
      expect(r.body).toMatch(
        /^Your appointment at Test Clinic on \w+day \d{1,2} March 2032 at \d\d:\d\d UTC (is booked|has been cancelled)\.$/,
      );
      expect(r.subject).toContain("Test Clinic");
    }
  }, 120_000);

  it("a redelivered event (the relay sends every retained row again) creates nothing new", async () => {
    const before = await notifications();
    const readBefore = (await groupInfo()).entriesRead;
    const rows = await outboxEvents();
    // As after a relay that crashed between XADD and marking its rows: every row goes out again.
    await apptPool.query("UPDATE outbox SET relayed_at = NULL");
    await until(async () => (await groupInfo()).entriesRead >= readBefore + rows, "the replay to be read");
    await drained();
    expect(await notifications()).toBe(before);
    expect(await countOf(pool, "inbox")).toBe(before);
  }, 120_000);

  it("two instances at once share the work, and no event makes two rows", async () => {
    services.push(await startNotificationService({ ...cfg, INSTANCE_ID: "notif-b" }, silent));
    const before = await notifications();
    // Everything so far was handled by notif-a alone.
    expect([...(await byConsumer()).keys()]).toEqual(["notif-a"]);
    const aBefore = (await byConsumer()).get("notif-a")!;
    const more = await bigClinic(apptPool, 160);
    const events = await burst(appt, more, { parallel: 8, cancelEvery: 4 });
    await until(async () => (await notifications()) === before + events, "every new notification");
    await drained();
    expect(await notifications()).toBe(before + events);
    const counts = await byConsumer();
    expect(counts.get("notif-a")!).toBeGreaterThan(aBefore);
    expect(counts.get("notif-b") ?? 0).toBeGreaterThan(0);
    expect(await countOf(pool, "(SELECT DISTINCT event_id FROM notifications) d")).toBe(before + events);
  }, 180_000);

  it("an entry no handler can use is dead-lettered and acknowledged, and the group goes on", async () => {
    const before = await notifications();
    await redis.xadd(
      stream,
      "*",
      "id",
      "999999",
      "topic",
      "appointment.booked",
      "payload",
      '{"no":"fields"}',
    );
    await redis.xadd(stream, "*", "garbage", "entry");
    await until(async () => (await redis.xlen(`${stream}:dead`)) === 2, "two dead letters");
    await drained();
    const dead = (await redis.xrange(`${stream}:dead`, "-", "+")) as [string, string[]][];
    expect(dead[0]![1]).toContain("unusable");
    const more = await bigClinic(apptPool, 4);
    const events = await burst(appt, more, { parallel: 2, cancelEvery: 100 });
    await until(async () => (await notifications()) === before + events, "later events still handled");
  }, 60_000);

  it("ops: /healthz, /readyz, and lag, pending and dead letters in /metrics", async () => {
    const base = `http://127.0.0.1:${services[0]!.opsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    // The gauges are refreshed by each claim round.
    await until(async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return (
        /^medisync_notification_dead_letters 2$/m.test(text) &&
        /^medisync_notification_stream_pending 0$/m.test(text) &&
        /^medisync_notification_stream_lag 0$/m.test(text) &&
        /^medisync_notification_events_total\{result="new"\} [1-9]/m.test(text)
      );
    }, "the gauges");
  }, 60_000);
});
