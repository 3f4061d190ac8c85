// The notification service as a real process, SIGKILLed twice in the middle of a burst of
// bookings and cancellations and started again: the restarted consumer re-reads its own pending
// entries (ID 0), the dead one's are claimed by another name (XAUTOCLAIM), and the inbox keeps the
// table at exactly one row per event.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPool } from "../src/shared/pg.ts";
import {
  bigClinic,
  burst,
  countOf,
  notificationTestConfig,
  resetNotificationState,
  until,
} from "./support/notification.ts";
import { runCli, type Watched } from "./support/process.ts";
import { type Instance, startInstance, stopInstance, testPool } from "./support/services.ts";

const cfg = notificationTestConfig("notif_crash");
let appt: Instance;
let apptPool: pg.Pool;
let pool: pg.Pool;
const running: Watched[] = [];

function startProcess(instanceId: string): Watched {
  const w = runCli(["notification"], {
    NOTIFICATION_DATABASE_URL: cfg.NOTIFICATION_DATABASE_URL,
    REDIS_URL: cfg.REDIS_URL,
    REDIS_KEY_PREFIX: cfg.REDIS_KEY_PREFIX,
    NOTIFICATION_OPS_PORT: "0",
    NOTIFICATION_GRPC_PORT: "0",
    NOTIFICATION_CLAIM_IDLE_MS: "1000",
    INSTANCE_ID: instanceId,
    LOG_LEVEL: "info",
  });
  running.push(w);
  return w;
}

async function kill9(w: Watched): Promise<void> {
  w.proc.kill("SIGKILL");
  const { signal } = await w.exited;
  expect(signal).toBe("SIGKILL");
}

beforeAll(async () => {
  await resetNotificationState(cfg);
  appt = await startInstance(cfg, undefined, "appointment-crash");
  apptPool = testPool(cfg);
});
afterAll(async () => {
  for (const w of running) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill("SIGKILL");
  await Promise.all(running.map((w) => w.exited));
  await pool?.end();
  await apptPool?.end();
  if (appt) await stopInstance(appt);
});

describe("notification process killed mid-burst", () => {
  it("SIGKILL and restart twice while events stream in: exactly one row per event", async () => {
    let current = startProcess("notif-crash");
    await current.waitFor(/notification service listening/, 60_000);
    pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 2);
    const fx = await bigClinic(apptPool, 400);
    const kills: number[] = [];
    let killing: Promise<void> | undefined;
    // Kill when the burst is a third and two thirds through. A restart takes seconds (a process
    // booting), in which the rest of the burst may be done: a worker that reaches the second kill
    // while the first restart is still under way waits for it, so both kills land mid-burst.
    const due = () => (kills.length === 0 ? 160 : kills.length === 1 ? 330 : Number.POSITIVE_INFINITY);
    const events = await burst(appt, fx, {
      parallel: 8,
      cancelEvery: 4,
      onProgress: async (done) => {
        while (killing) {
          if (done < due()) return;
          await killing;
        }
        if (done < due()) return;
        kills.push(done);
        killing = (async () => {
          await kill9(current);
          // The first restart keeps its name (re-reads its own pending from ID 0); the second
          // takes a new one, so the dead consumer's pending entries must be claimed.
          current = startProcess(kills.length === 1 ? "notif-crash" : "notif-crash-2");
          await current.waitFor(/notification service listening/, 60_000);
        })().finally(() => {
          killing = undefined;
        });
      },
    });
    while (killing) await killing;
    expect(kills.length).toBe(2);
    expect(events).toBe(500);
    expect(kills[1]).toBeLessThan(events);
    await until(
      async () => (await countOf(pool, "notifications")) >= events,
      `${events} notifications`,
      120_000,
    );
    // And it stays there: pending entries of the dead consumers are claimed, found in the inbox, acknowledged.
    await until(
      async () => (await countOf(apptPool, "outbox WHERE relayed_at IS NULL")) === 0,
      "everything relayed",
    );
    expect(await countOf(pool, "notifications")).toBe(events);
    expect(await countOf(pool, "(SELECT DISTINCT event_id FROM notifications) d")).toBe(events);
    expect(await countOf(apptPool, "outbox")).toBe(events);
    // Each outbox row has its notification (the ids are the producer's).
    const ids = await apptPool.query<{ id: string }>("SELECT id::text FROM outbox");
    const got = await pool.query<{ event_id: string }>("SELECT event_id FROM notifications");
    expect(new Set(got.rows.map((r) => r.event_id))).toEqual(
      new Set(ids.rows.map((r) => `appointment:${r.id}`)),
    );
  }, 300_000);
});
