// Low-stock alerts as notifications: an `inventory.low-stock` entry, written as the inventory's
// relay writes it (src/inventory/event-relay.ts), makes one staff alert row (no patient; the clinic
// by its code) and one delivery to each webhook subscribed to the topic for every clinic — however
// often the entry is relayed. Real notification service, gateway, PostgreSQL, Redis and receiver.
import { Redis } from "ioredis";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NotificationService, startNotificationService } from "../src/notification/server.ts";
import { createPool } from "../src/shared/pg.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import {
  countOf,
  notificationTestConfig,
  Receiver,
  resetNotificationState,
  signatureValid,
  until,
} from "./support/notification.ts";
import { captureLogger, type Instance, startInstance, stopInstance } from "./support/services.ts";

const cfg = notificationTestConfig("notif_low_stock");
const stream = `${cfg.REDIS_KEY_PREFIX}events`;
let appt: Instance;
let service: NotificationService;
let gw: TestGateway;
let pool: pg.Pool;
let redis: Redis;
const receivers: Receiver[] = [];

beforeAll(async () => {
  await resetNotificationState(cfg);
  appt = await startInstance(cfg, undefined, "appointment-low-stock");
  service = await startNotificationService(
    { ...cfg, INSTANCE_ID: "notif-low-stock" },
    captureLogger("notification").log,
  );
  gw = await startGateway({ ...cfg, NOTIFICATION_ADDRS: [`127.0.0.1:${service.grpcPort}`] }, [appt]);
  pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 2);
  redis = new Redis(cfg.REDIS_URL);
}, 60_000);
afterAll(async () => {
  await gw?.close();
  await service?.close();
  for (const r of receivers) await r.close();
  redis?.disconnect();
  await pool?.end();
  if (appt) await stopInstance(appt);
});

/** One XADD with the fields the inventory relay writes (id <log index>-<n>, topic, payload). */
async function publish(index: number, place: number, payload: Record<string, unknown>): Promise<void> {
  await redis.xadd(
    stream,
    "MAXLEN",
    "~",
    "100000",
    "*",
    "id",
    `${index}-${place}`,
    "topic",
    "inventory.low-stock",
    "payload",
    JSON.stringify(payload),
  );
}

async function webhook(events: string[], clinicId?: string) {
  const r = new Receiver();
  await r.start();
  receivers.push(r);
  const res = await http(gw.base, "POST", "/v1/webhooks", {
    url: r.url,
    events,
    ...(clinicId ? { clinicId } : {}),
  });
  expect(res.status, JSON.stringify(res.json)).toBe(201);
  return { receiver: r, id: res.json.id as string, secret: res.json.secret as string };
}

describe("inventory.low-stock", () => {
  it("published twice (a relay's republish): one staff alert row, one delivery, to every-clinic webhooks only", async () => {
    const all = await webhook(["inventory.low-stock"]);
    const scoped = await webhook(["inventory.low-stock"], "5f0b8a52-2f7e-4c59-9d6c-3f0a6b1e9a01");
    const other = await webhook(["appointment.booked"]);
    const payload = { clinic: "NORTH", medicationCode: "AMOX500", quantity: 4, reorderLevel: 5, index: 17 };
    await publish(17, 0, payload);
    await publish(17, 0, payload);
    await until(async () => all.receiver.received.length >= 1, "the alert delivered");
    await until(
      async () =>
        (await countOf(pool, "inbox WHERE event_id = 'inventory:17-0' AND seen_at > handled_at")) === 1,
      "the second copy seen as a duplicate",
    );

    const rows = await pool.query(
      `SELECT audience, patient_id, clinic_id, clinic_code, kind, subject, body FROM notifications
        WHERE event_id = 'inventory:17-0'`,
    );
    expect(rows.rows).toEqual([
      {
        audience: "staff",
        patient_id: null,
        clinic_id: null,
        clinic_code: "NORTH",
        kind: "low-stock",
        subject: "Low stock: AMOX500 at NORTH",
        body: "NORTH has 4 × AMOX500 left (reorder level 5). Reorder soon.",
      },
    ]);
    expect(await countOf(pool, "webhook_deliveries WHERE event_id = 'inventory:17-0'")).toBe(1);
    await until(
      async () =>
        (await countOf(
          pool,
          "webhook_deliveries WHERE event_id = 'inventory:17-0' AND status = 'delivered'",
        )) === 1,
      "the delivery recorded delivered",
    );

    expect(all.receiver.eventIds()).toEqual(new Set(["inventory:17-0"]));
    const got = all.receiver.received[0]!;
    expect(signatureValid(got.signature, got.body, all.secret)).toBe(true);
    const body = JSON.parse(got.body) as { id: string; type: string; data: Record<string, unknown> };
    expect(body.id).toBe("inventory:17-0");
    expect(body.type).toBe("inventory.low-stock");
    expect(body.data).toMatchObject({
      kind: "low-stock",
      clinic: "NORTH",
      medicationCode: "AMOX500",
      quantity: 4,
      reorderLevel: 5,
      index: 17,
      subject: "Low stock: AMOX500 at NORTH",
    });
    expect(body.data).not.toHaveProperty("patientId");
    // A webhook of one clinic (by id) cannot match an event that names its clinic by code.
    expect(scoped.receiver.received).toHaveLength(0);
    expect(other.receiver.received).toHaveLength(0);

    // Two events of one log entry (index 18, places 0 and 1) are two alerts.
    await publish(18, 0, { ...payload, medicationCode: "IBU200", quantity: 0, index: 18 });
    await publish(18, 1, { ...payload, medicationCode: "PARA500", quantity: 2, index: 18 });
    await until(async () => all.receiver.eventIds().size === 3, "two more alerts delivered");
    expect(await countOf(pool, "notifications WHERE audience = 'staff'")).toBe(3);
  }, 60_000);

  it("a low-stock payload that does not fit is dead-lettered, making nothing", async () => {
    const before = await countOf(pool, "notifications");
    await publish(19, 0, {
      clinic: "NORTH",
      medicationCode: "AMOX500",
      quantity: -1,
      reorderLevel: 5,
      index: 19,
    });
    await until(async () => (await redis.xlen(`${stream}:dead`)) === 1, "one dead letter");
    expect(await countOf(pool, "notifications")).toBe(before);
  }, 30_000);

  it("the gateway takes inventory.low-stock as a webhook event type", async () => {
    const r = await http(gw.base, "POST", "/v1/webhooks", {
      url: "http://127.0.0.1:9/hook",
      events: ["inventory.low-stock", "appointment.booked"],
    });
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const bad = await http(gw.base, "POST", "/v1/webhooks", {
      url: "http://127.0.0.1:9/hook",
      events: ["inventory.restocked"],
    });
    expect(bad.status).toBe(400);
    expect(bad.json.field).toBe("events.0");
  });
});
