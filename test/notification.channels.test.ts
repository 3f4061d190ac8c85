// Issue 13's acceptance for the channels: 1,000 bookings and cancellations in a burst while the
// notification service — a real process — is SIGKILLed and restarted twice. The webhook receiver
// (subscribed to every appointment event) and the SMTP server (for the half of the patients with a
// contact) together saw every event; distinct event ids equal the events; duplicates, if any, carry
// the same event id (and a valid signature, or the same recipient); the notifications table has
// exactly one row per event.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContactCipher, setContact } from "../src/notification/contacts.ts";
import { createWebhook } from "../src/notification/webhooks.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { createPool } from "../src/shared/pg.ts";
import {
  bigClinic,
  countOf,
  notificationTestConfig,
  Receiver,
  resetNotificationState,
  SmtpSink,
  signatureValid,
  until,
} from "./support/notification.ts";
import { runCli, type Watched } from "./support/process.ts";
import { type Instance, startInstance, stopInstance, testPool } from "./support/services.ts";

const cfg = notificationTestConfig("notif_channels");
const key = Buffer.alloc(32, 9).toString("base64");
let appt: Instance;
let apptPool: pg.Pool;
let pool: pg.Pool;
const receiver = new Receiver();
const smtp = new SmtpSink();
const running: Watched[] = [];

function startProcess(instanceId: string): Watched {
  const w = runCli(["notification"], {
    NOTIFICATION_DATABASE_URL: cfg.NOTIFICATION_DATABASE_URL,
    REDIS_URL: cfg.REDIS_URL,
    REDIS_KEY_PREFIX: cfg.REDIS_KEY_PREFIX,
    NOTIFICATION_OPS_PORT: "0",
    NOTIFICATION_GRPC_PORT: "0",
    NOTIFICATION_CLAIM_IDLE_MS: "1000",
    NOTIFICATION_WEBHOOK_ALLOW_PRIVATE: "true",
    NOTIFICATION_WEBHOOK_BACKOFF_MS_BASE: "50",
    NOTIFICATION_CONTACT_KEY: key,
    SMTP_URL: smtp.url,
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
  await Promise.all([receiver.start(), smtp.start()]);
  await resetNotificationState(cfg);
  appt = await startInstance(cfg, undefined, "appointment-channels");
  apptPool = testPool(cfg);
});
afterAll(async () => {
  for (const w of running) if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill("SIGKILL");
  await Promise.all(running.map((w) => w.exited));
  await receiver.close();
  await smtp.close();
  await pool?.end();
  await apptPool?.end();
  if (appt) await stopInstance(appt);
});

describe("both channels, the notification process killed twice mid-burst", () => {
  it("1,000 events: the receiver and the SMTP server together saw every one; one row per event", async () => {
    let current = startProcess("notif-channels");
    await current.waitFor(/notification service listening/, 60_000);
    pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 4);
    const hook = await createWebhook(pool, {
      url: receiver.url,
      events: ["appointment.booked", "appointment.cancelled"],
      clinicId: undefined,
    });

    // 800 bookings, every 4th cancelled: 1,000 events. Even slots' patients have a contact.
    const fx = await bigClinic(apptPool, 800);
    const slots = [...fx.days.values()].flat();
    expect(slots).toHaveLength(800);
    const cipher = new ContactCipher(key);
    const patients = slots.map(() => randomUUID());
    const address = new Map<string, string>();
    await Promise.all(
      patients.map(async (p, i) => {
        if (i % 2 !== 0) return;
        address.set(p, `patient-${i}@example.com`);
        await setContact(pool, cipher, p, `patient-${i}@example.com`);
      }),
    );

    const kills: number[] = [];
    let killing: Promise<void> | undefined;
    let events = 0;
    let next = 0;
    const due = () => (kills.length === 0 ? 150 : kills.length === 1 ? 400 : Number.POSITIVE_INFINITY);
    const progress = async () => {
      while (killing) {
        if (events < due()) return;
        await killing;
      }
      if (events < due()) return;
      kills.push(events);
      killing = (async () => {
        await kill9(current);
        current = startProcess(kills.length === 1 ? "notif-channels" : "notif-channels-2");
        await current.waitFor(/notification service listening/, 60_000);
      })().finally(() => {
        killing = undefined;
      });
    };
    const worker = async () => {
      while (next < slots.length) {
        const i = next++;
        const r = await callUnary(
          appt.client.book.bind(appt.client),
          { slotId: slots[i]!.id, patientId: patients[i]!, idempotencyKey: randomUUID() },
          10_000,
        );
        events++;
        await progress();
        if (i % 4 === 0) {
          await callUnary(appt.client.cancel.bind(appt.client), { appointmentId: r.appointment!.id }, 10_000);
          events++;
          await progress();
        }
      }
    };
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 16 }, worker));
    const burstMs = Date.now() - t0;
    while (killing) await killing;
    expect(kills.length).toBe(2);
    expect(events).toBe(1000);
    expect(kills[1]).toBeLessThan(events);

    await until(async () => (await countOf(pool, "notifications")) >= events, "1,000 notifications", 60_000);
    const rows = await pool.query<{ event_id: string; patient_id: string; subject: string; body: string }>(
      "SELECT event_id, patient_id::text, subject, body FROM notifications",
    );
    const mailed = rows.rows.filter((r) => address.has(r.patient_id));
    // Deliveries claimed by a killed process come free when their lease (30 s) passes.
    await until(
      async () => receiver.eventIds().size === events && smtp.eventIds().size === mailed.length,
      "every event delivered on its channels",
      60_000,
    );
    expect(await countOf(pool, "notifications")).toBe(events);
    expect(await countOf(pool, "(SELECT DISTINCT event_id FROM notifications) d")).toBe(events);
    const ids = await apptPool.query<{ id: string }>("SELECT id::text FROM outbox");
    const all = new Set(ids.rows.map((r) => `appointment:${r.id}`));
    expect(all.size).toBe(events);
    expect(new Set(rows.rows.map((r) => r.event_id))).toEqual(all);

    // Together every event; each channel exactly what it should have.
    const seen = new Set([...receiver.eventIds(), ...smtp.eventIds()]);
    expect(seen).toEqual(all);
    expect(receiver.eventIds()).toEqual(all);
    expect(smtp.eventIds()).toEqual(new Set(mailed.map((r) => r.event_id)));
    // Duplicates (a delivery in flight when its process died) carry the same event id, signed.
    for (const r of receiver.received) expect(signatureValid(r.signature, r.body, hook.secret)).toBe(true);
    const byEvent = new Map(rows.rows.map((r) => [r.event_id, r]));
    for (const m of smtp.received) {
      const n = byEvent.get(m.eventId)!;
      expect(m.rcptTo).toEqual([address.get(n.patient_id)]);
      expect(m.subject).toBe(n.subject);
      expect(m.text).toBe(n.body);
    }
    const duplicates = receiver.received.length - events + smtp.received.length - mailed.length;
    console.log(
      `channels: ${events} events, kills at ${kills.join(", ")}, ${mailed.length} e-mailed, ${duplicates} duplicate deliveries; burst ${burstMs} ms, all delivered after ${Date.now() - t0} ms`,
    );
  }, 120_000);
});
