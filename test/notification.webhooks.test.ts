// Webhooks and the notification routes end to end: real appointment service, notification
// service(s), gateway, PostgreSQL, Redis, and real HTTP receivers on loopback. Every event reaches
// a subscribed receiver signed and at least once; a failing receiver is retried with backoff and
// then served, or given up (dead) and redelivered once fixed; two instances never both deliver
// one row; loopback URLs are refused without the switch; a patient's notifications page newest
// first; bad input names the field; the pruner keeps what a replay could still need.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pruneOnce } from "../src/notification/pruner.ts";
import { type NotificationService, startNotificationService } from "../src/notification/server.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { createPool } from "../src/shared/pg.ts";
import type { ClinicFixture } from "./support/fixtures.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import {
  bigClinic,
  burst,
  countOf,
  notificationTestConfig,
  Receiver,
  resetNotificationState,
  signatureValid,
  until,
} from "./support/notification.ts";
import { captureLogger, type Instance, startInstance, stopInstance, testPool } from "./support/services.ts";

const attemptsMax = 4;
const cfg = notificationTestConfig("notif_webhooks", {
  NOTIFICATION_WEBHOOK_ATTEMPTS_MAX: String(attemptsMax),
  NOTIFICATION_WEBHOOK_BACKOFF_MS_BASE: "20",
});
// A second system of its own (database, stream) whose notification service keeps the default:
// private addresses refused.
const strictCfg = notificationTestConfig("notif_webhooks_strict", {
  NOTIFICATION_WEBHOOK_ALLOW_PRIVATE: "false",
});
const captured = captureLogger("notification");
let appt: Instance;
let apptPool: pg.Pool;
let pool: pg.Pool;
let gw: TestGateway;
let strictGw: TestGateway;
const services: NotificationService[] = [];
const receivers: Receiver[] = [];

const gatewayFor = (c: typeof cfg, s: NotificationService) =>
  startGateway({ ...c, NOTIFICATION_ADDRS: [`127.0.0.1:${s.grpcPort}`] }, [appt]);

beforeAll(async () => {
  await resetNotificationState(cfg);
  await resetNotificationState(strictCfg);
  appt = await startInstance(cfg, undefined, "appointment-webhooks");
  apptPool = testPool(cfg);
  services.push(await startNotificationService({ ...cfg, INSTANCE_ID: "notif-a" }, captured.log));
  pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 2);
  gw = await gatewayFor(cfg, services[0]!);
  const strict = await startNotificationService({ ...strictCfg, INSTANCE_ID: "notif-strict" }, captured.log);
  services.push(strict);
  strictGw = await gatewayFor(strictCfg, strict);
}, 60_000);
afterAll(async () => {
  await gw?.close();
  await strictGw?.close();
  for (const s of services) await s.close();
  for (const r of receivers) await r.close();
  await pool?.end();
  await apptPool?.end();
  if (appt) await stopInstance(appt);
});

async function receiver(): Promise<Receiver> {
  const r = await new Receiver().start();
  receivers.push(r);
  return r;
}

async function createWebhook(url: string, events: string[], clinicId?: string) {
  const r = await http(gw.base, "POST", "/v1/webhooks", { url, events, ...(clinicId ? { clinicId } : {}) });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json as unknown as {
    id: string;
    secret: string;
    url: string;
    events: string[];
    clinicId: string | null;
  };
}

interface DeliveryView {
  id: string;
  eventId: string;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  nextAttemptAt: string | null;
}

/** Every delivery of a webhook, through the API, page by page. */
async function deliveries(webhookId: string, limit = 100): Promise<DeliveryView[]> {
  const out: DeliveryView[] = [];
  let cursor: string | null = null;
  do {
    const q: string = `?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const r = await http(gw.base, "GET", `/v1/webhooks/${webhookId}/deliveries${q}`);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    out.push(...(r.json.items as unknown as DeliveryView[]));
    cursor = r.json.nextCursor as string | null;
  } while (cursor);
  return out;
}

/** Slots of a fixture: a burst books every one (bigClinic rounds up to whole days of 16). */
const slotCount = (fx: ClinicFixture) => [...fx.days.values()].flat().length;

function expectProblem(r: Awaited<ReturnType<typeof http>>, status: number, field: string) {
  expect(r.status, `${field}: ${JSON.stringify(r.json)}`).toBe(status);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  expect(r.json.field).toBe(field);
}

const eventsOf = async (clinicId?: string) =>
  new Set(
    (
      await pool.query<{ event_id: string }>(
        `SELECT event_id FROM notifications ${clinicId ? "WHERE clinic_id = $1" : ""}`,
        clinicId ? [clinicId] : [],
      )
    ).rows.map((r) => r.event_id),
  );

describe("webhooks", () => {
  let all: Receiver;
  let allHook: { id: string; secret: string };

  it("a burst of bookings and cancellations: every event reaches the receiver, signed, once or more", async () => {
    all = await receiver();
    const elsewhere = await receiver();
    allHook = await createWebhook(all.url, ["appointment.booked", "appointment.cancelled"]);
    expect(allHook.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    // A webhook for another clinic hears nothing of this one.
    const otherHook = await createWebhook(elsewhere.url, ["appointment.booked"], randomUUID());
    const listed = await http(gw.base, "GET", "/v1/webhooks");
    expect(listed.status).toBe(200);
    expect((listed.json.items as { id: string }[]).map((w) => w.id)).toEqual([allHook.id, otherHook.id]);
    expect(JSON.stringify(listed.json)).not.toContain("whsec_");

    const fx = await bigClinic(apptPool, 48);
    const events = await burst(appt, fx, { parallel: 8, cancelEvery: 3 });
    expect(events).toBe(64);
    await until(
      async () => all.eventIds().size === events,
      `${events} distinct events at the receiver`,
      60_000,
    );
    expect(all.eventIds()).toEqual(await eventsOf());
    for (const r of all.received) {
      expect(signatureValid(r.signature, r.body, allHook.secret), r.eventId).toBe(true);
      const body = JSON.parse(r.body) as {
        id: string;
        type: string;
        createdAt: string;
        data: Record<string, unknown>;
      };
      expect(body.id).toBe(r.eventId);
      expect(["appointment.booked", "appointment.cancelled"]).toContain(body.type);
      expect(Number.isNaN(Date.parse(body.createdAt))).toBe(false);
      expect(body.data.clinicId).toBe(fx.clinicId);
      expect(Object.keys(body.data).sort()).toEqual(
        ["appointmentId", "clinicId", "kind", "notificationId", "patientId", "subject"].sort(),
      );
    }
    const rows = await deliveries(allHook.id, 25);
    expect(rows).toHaveLength(events);
    expect(new Set(rows.map((d) => d.id)).size).toBe(events);
    await until(
      async () => (await deliveries(allHook.id)).every((d) => d.status === "delivered"),
      "every delivery marked delivered",
    );
    expect(elsewhere.received).toHaveLength(0);
    expect(await deliveries(otherHook.id)).toHaveLength(0);
  }, 120_000);

  it("a receiver that answers 500 twice is retried with backoff, then served: attempts recorded", async () => {
    const flaky = await receiver();
    flaky.answer = (_id, seenBefore) => (seenBefore < 2 ? 500 : 204);
    const fx = await bigClinic(apptPool, 3);
    const hook = await createWebhook(flaky.url, ["appointment.booked"], fx.clinicId);
    await burst(appt, fx, { parallel: 4, cancelEvery: 1_000 });
    const bookings = slotCount(fx);
    await until(async () => {
      const d = await deliveries(hook.id);
      return d.length === bookings && d.every((x) => x.status === "delivered");
    }, "every flaky delivery delivered");
    for (const d of await deliveries(hook.id)) {
      expect(d.attempts).toBe(3);
      expect(d.lastStatusCode).toBe(204);
      expect(d.lastError).toBeNull();
      expect(d.nextAttemptAt).toBeNull();
      const got = flaky.received.filter((r) => r.eventId === d.eventId);
      expect(got.map((r) => r.answered)).toEqual([500, 500, 204]);
      // Every attempt sends the same body, signed each time.
      expect(new Set(got.map((r) => r.body)).size).toBe(1);
      for (const r of got) expect(signatureValid(r.signature, r.body, hook.secret)).toBe(true);
    }
  }, 60_000);

  it("a receiver that never answers 2xx: dead after the limit, visible, redelivered once fixed", async () => {
    const broken = await receiver();
    broken.answer = () => 503;
    const fx = await bigClinic(apptPool, 2);
    const hook = await createWebhook(broken.url, ["appointment.booked"], fx.clinicId);
    await burst(appt, fx, { parallel: 4, cancelEvery: 1_000 });
    const bookings = slotCount(fx);
    await until(async () => {
      const d = await deliveries(hook.id);
      return d.length === bookings && d.every((x) => x.status === "dead");
    }, "every delivery dead");
    const dead = await deliveries(hook.id);
    for (const d of dead) {
      expect(d.attempts).toBe(attemptsMax);
      expect(d.lastStatusCode).toBe(503);
      expect(d.lastError).toBe("HTTP 503");
      expect(d.nextAttemptAt).toBeNull();
      expect(broken.received.filter((r) => r.eventId === d.eventId)).toHaveLength(attemptsMax);
    }
    // A log line per dead delivery, ids only.
    const lines = captured.lines.filter((l) => l.event === "webhook_dead" && l.webhookId === hook.id);
    expect(lines).toHaveLength(bookings);
    for (const l of lines) expect(Object.keys(l)).not.toContain("url");
    const metrics = await (await fetch(`http://127.0.0.1:${services[0]!.opsPort}/metrics`)).text();
    expect(metrics).toMatch(/^medisync_notification_webhook_dead_total [1-9]/m);
    // The patient's notification says its webhook channel is dead: this webhook gave up, the
    // all-clinics one delivered.
    const patient = await pool.query<{ patient_id: string }>(
      "SELECT patient_id::text FROM notifications WHERE event_id = $1",
      [dead[0]!.eventId],
    );
    const page = await http(gw.base, "GET", `/v1/patients/${patient.rows[0]!.patient_id}/notifications`);
    expect((page.json.items as { channels: { status: string; dead: number }[] }[])[0]!.channels).toEqual([
      { channel: "webhook", status: "dead", delivered: 1, pending: 0, dead: 1 },
      // No contact on record (and no SMTP here): nothing to e-mail.
      { channel: "email", status: "none", delivered: 0, pending: 0, dead: 0 },
    ]);

    broken.answer = () => 200;
    const sentBefore = broken.received.length;
    const again = await http(gw.base, "POST", `/v1/webhooks/${hook.id}/deliveries/${dead[0]!.id}/redeliver`);
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    expect(again.json).toMatchObject({ id: dead[0]!.id, status: "pending", attempts: 0 });
    await until(
      async () => (await deliveries(hook.id)).find((d) => d.id === dead[0]!.id)?.status === "delivered",
      "the redelivery delivered",
    );
    const after = (await deliveries(hook.id)).find((d) => d.id === dead[0]!.id)!;
    expect(after).toMatchObject({ attempts: 1, lastStatusCode: 200, lastError: null });
    expect(broken.received.slice(sentBefore).map((r) => r.eventId)).toEqual([dead[0]!.eventId]);
    // The other one stays dead: redelivery is one delivery's.
    if (dead[1]) expect((await deliveries(hook.id)).find((d) => d.id === dead[1]!.id)?.status).toBe("dead");
  }, 60_000);

  it("a URL to a loopback or private address is refused without the switch, naming url", async () => {
    const target = await receiver();
    for (const url of [
      target.url,
      "http://localhost:9/hook", // a name: resolved, then checked
      "http://[::1]:9/",
      "http://10.0.0.8/",
      "http://169.254.169.254/latest/meta-data/",
      "http://0.0.0.0:9/",
      "https://192.168.1.20/",
    ]) {
      const r = await http(strictGw.base, "POST", "/v1/webhooks", { url, events: ["appointment.booked"] });
      expectProblem(r, 400, "url");
      expect(r.json.type).toBe("https://medisync.dev/problems/validation");
    }
    const none = await http(strictGw.base, "GET", "/v1/webhooks");
    expect(none.json.items).toEqual([]);
    // With the switch (the main system) the same loopback URL is accepted.
    await createWebhook(target.url, ["prescription.issued"]);
  });

  it("two notification instances: every delivery made by one of them, each exactly once", async () => {
    services.push(await startNotificationService({ ...cfg, INSTANCE_ID: "notif-b" }, captured.log));
    const shared = await receiver();
    const fx = await bigClinic(apptPool, 120);
    const hook = await createWebhook(
      shared.url,
      ["appointment.booked", "appointment.cancelled"],
      fx.clinicId,
    );
    const events = await burst(appt, fx, { parallel: 8, cancelEvery: 4 });
    await until(
      async () => shared.eventIds().size === events,
      `${events} events at the shared receiver`,
      90_000,
    );
    await until(
      async () => (await deliveries(hook.id)).every((d) => d.status === "delivered"),
      "every delivery marked delivered",
    );
    // No failure happened, so no attempt was repeated: one POST and one row per event.
    expect(shared.received).toHaveLength(events);
    expect(await countOf(pool, "webhook_deliveries WHERE webhook_id = $1", [hook.id])).toBe(events);
    expect(await countOf(pool, "webhook_deliveries WHERE webhook_id = $1 AND attempts = 1", [hook.id])).toBe(
      events,
    );
    const by = await pool.query<{ attempted_by: string }>(
      "SELECT DISTINCT attempted_by FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY 1",
      [hook.id],
    );
    expect(by.rows.map((r) => r.attempted_by)).toEqual(["notif-a", "notif-b"]);
    // And the all-clinics webhook got these too, each event's row once.
    await until(async () => {
      const mine = await eventsOf(fx.clinicId);
      return [...mine].every((id) => all.eventIds().has(id));
    }, "the all-clinics receiver to catch up");
    expect(
      await countOf(
        pool,
        "(SELECT event_id FROM webhook_deliveries GROUP BY webhook_id, event_id HAVING count(*) > 1) d",
      ),
    ).toBe(0);
  }, 150_000);
});

describe("a patient's notifications", () => {
  it("page newest first with opaque cursors, every notification once", async () => {
    const fx = await bigClinic(apptPool, 7);
    const patientId = randomUUID();
    const slots = [...fx.days.values()].flat().slice(0, 7);
    const booked: string[] = [];
    for (const s of slots) {
      const r = await callUnary(
        appt.client.book.bind(appt.client),
        { slotId: s.id, patientId, idempotencyKey: randomUUID() },
        10_000,
      );
      booked.push(r.appointment!.id);
    }
    // Cancelled only once every booking's notification exists, so the cancellations are the newest.
    await until(
      async () => (await countOf(pool, "notifications WHERE patient_id = $1", [patientId])) === slots.length,
      "the bookings' notifications",
    );
    for (const id of booked.slice(0, 2))
      await callUnary(appt.client.cancel.bind(appt.client), { appointmentId: id }, 10_000);
    const total = slots.length + 2;
    await until(
      async () => (await countOf(pool, "notifications WHERE patient_id = $1", [patientId])) === total,
      `${total} notifications of the patient`,
    );
    const seen: { id: string; createdAt: string; kind: string }[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const q: string = `?limit=4${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const r = await http(gw.base, "GET", `/v1/patients/${patientId}/notifications${q}`);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      const items = r.json.items as unknown as {
        id: string;
        createdAt: string;
        kind: string;
        channels: unknown[];
      }[];
      sizes.push(items.length);
      for (const n of items) expect(n.channels).toHaveLength(2); // webhook, email
      seen.push(...items);
      cursor = r.json.nextCursor as string | null;
    } while (cursor);
    expect(sizes).toEqual([4, 4, 1]);
    expect(new Set(seen.map((n) => n.id)).size).toBe(total);
    const times = seen.map((n) => Date.parse(n.createdAt));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    // The two cancellations came last, so they lead.
    expect(seen.slice(0, 2).map((n) => n.kind)).toEqual(["appointment-cancelled", "appointment-cancelled"]);
    const other = await http(gw.base, "GET", `/v1/patients/${randomUUID()}/notifications`);
    expect(other.json).toEqual({ items: [], nextCursor: null });
  }, 60_000);
});

describe("bad input on every notification route", () => {
  it("answers 4xx problem+json naming the field", async () => {
    const id = randomUUID();
    const hook = (await http(gw.base, "GET", "/v1/webhooks?limit=1")).json.items as { id: string }[];
    const cases: [string, string, unknown, number, string][] = [
      ["GET", "/v1/patients/not-a-uuid/notifications", undefined, 400, "id"],
      ["GET", `/v1/patients/${id}/notifications?limit=abc`, undefined, 400, "limit"],
      ["GET", `/v1/patients/${id}/notifications?limit=0`, undefined, 400, "limit"],
      ["GET", `/v1/patients/${id}/notifications?limit=101`, undefined, 400, "limit"],
      ["GET", `/v1/patients/${id}/notifications?cursor=${"x".repeat(600)}`, undefined, 400, "cursor"],
      ["GET", `/v1/patients/${id}/notifications?cursor=bm90LW91cnM`, undefined, 400, "cursor"],
      ["GET", `/v1/patients/${id}/notifications?colour=red`, undefined, 400, "colour"],
      ["POST", "/v1/webhooks", '{"url": "', 400, "body"],
      ["POST", "/v1/webhooks", {}, 400, "url"],
      ["POST", "/v1/webhooks", { url: "ftp://example.com/", events: ["appointment.booked"] }, 400, "url"],
      ["POST", "/v1/webhooks", { url: "http://x/".repeat(300), events: ["appointment.booked"] }, 400, "url"],
      ["POST", "/v1/webhooks", { url: 42, events: ["appointment.booked"] }, 400, "url"],
      ["POST", "/v1/webhooks", { url: "https://example.com/", events: [] }, 400, "events"],
      ["POST", "/v1/webhooks", { url: "https://example.com/", events: "appointment.booked" }, 400, "events"],
      [
        "POST",
        "/v1/webhooks",
        { url: "https://example.com/", events: ["appointment.moved"] },
        400,
        "events.0",
      ],
      [
        "POST",
        "/v1/webhooks",
        { url: "https://example.com/", events: ["appointment.booked", "appointment.booked"] },
        400,
        "events",
      ],
      [
        "POST",
        "/v1/webhooks",
        { url: "https://example.com/", events: ["appointment.booked"], clinicId: "x" },
        400,
        "clinicId",
      ],
      [
        "POST",
        "/v1/webhooks",
        { url: "https://example.com/", events: ["appointment.booked"], secret: "mine" },
        400,
        "secret",
      ],
      ["GET", "/v1/webhooks?limit=-1", undefined, 400, "limit"],
      ["GET", "/v1/webhooks?cursor=abc", undefined, 400, "cursor"],
      ["GET", "/v1/webhooks/nope/deliveries", undefined, 400, "id"],
      ["GET", `/v1/webhooks/${id}/deliveries?limit=1000`, undefined, 400, "limit"],
      ["GET", `/v1/webhooks/${id}/deliveries`, undefined, 404, "webhookId"],
      ["POST", `/v1/webhooks/nope/deliveries/${id}/redeliver`, undefined, 400, "id"],
      ["POST", `/v1/webhooks/${id}/deliveries/nope/redeliver`, undefined, 400, "deliveryId"],
      ["POST", `/v1/webhooks/${id}/deliveries/${id}/redeliver`, undefined, 404, "webhookId"],
      ["POST", `/v1/webhooks/${hook[0]!.id}/deliveries/${id}/redeliver`, undefined, 404, "deliveryId"],
    ];
    for (const [method, path, body, status, field] of cases) {
      const r = await http(gw.base, method, path, body);
      expectProblem(r, status, field);
    }
    const missing = await http(gw.base, "GET", `/v1/webhooks/${id}/deliveries`);
    expect(missing.json.type).toBe("https://medisync.dev/problems/webhook-not-found");
  });
});

describe("pruning", () => {
  it("forgets finished deliveries, their notifications and inbox rows past the retention; keeps pending ones and replayed events", async () => {
    const retentionSeconds = cfg.NOTIFICATION_INBOX_RETENTION_SECONDS;
    const old = `now() - make_interval(secs => ${retentionSeconds + 3_600})`;
    // Everything so far is made old, except one pending delivery and one event replayed since.
    const target = await receiver();
    const pendingHook = await createWebhook(target.url, ["appointment.booked"]);
    const fx = await bigClinic(apptPool, 2);
    const events = await burst(appt, fx, { parallel: 4, cancelEvery: 1_000 });
    await until(async () => (await eventsOf(fx.clinicId)).size === events, "the events' notifications");
    const mine = [...(await eventsOf(fx.clinicId))];
    await until(
      async () => (await countOf(pool, "webhook_deliveries WHERE status = 'pending'")) === 0,
      "every delivery finished",
    );
    // One delivery put back to pending far in the future: nobody finishes it during the test.
    const hookEvents = (
      await pool.query<{ event_id: string }>(
        "SELECT event_id FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY event_id",
        [pendingHook.id],
      )
    ).rows.map((r) => r.event_id);
    expect(hookEvents).toHaveLength(slotCount(fx));
    expect(mine).toEqual(expect.arrayContaining(hookEvents));
    const held = hookEvents[0]!;
    await pool.query(
      `UPDATE webhook_deliveries SET status = 'pending', lease_id = NULL, next_attempt_at = now() + interval '1 day'
        WHERE webhook_id = $1 AND event_id = $2`,
      [pendingHook.id, held],
    );
    await pool.query(`UPDATE webhook_deliveries SET updated_at = ${old}, created_at = ${old}`);
    await pool.query(`UPDATE notifications SET created_at = ${old}`);
    await pool.query(`UPDATE inbox SET seen_at = ${old}, handled_at = ${old}`);
    const replayed = hookEvents[1]!;
    const before = await countOf(pool, "inbox");
    // The producer relays it again (a replay after a stream loss): the inbox sees it anew.
    const outboxId = replayed.split(":")[1]!;
    await apptPool.query("UPDATE outbox SET relayed_at = NULL WHERE id = $1", [outboxId]);
    await until(
      async () =>
        (await countOf(pool, "inbox WHERE event_id = $1 AND seen_at > now() - interval '1 hour'", [
          replayed,
        ])) === 1,
      "the replayed event seen again",
    );
    const n = await pruneOnce(pool, retentionSeconds);
    expect(n.deliveries).toBeGreaterThan(0);
    expect(n.notifications).toBeGreaterThan(0);
    expect(await countOf(pool, "webhook_deliveries WHERE status <> 'pending'")).toBe(0);
    // The held delivery, its notification and inbox row stay; so does the replayed event's inbox row.
    expect(await countOf(pool, "webhook_deliveries WHERE event_id = $1 AND status = 'pending'", [held])).toBe(
      1,
    );
    expect(await countOf(pool, "notifications WHERE event_id = $1", [held])).toBe(1);
    expect(await countOf(pool, "inbox WHERE event_id = ANY ($1::text[])", [[held, replayed]])).toBe(2);
    expect(n.inbox).toBe(before - (await countOf(pool, "inbox")));
    expect(await countOf(pool, "inbox")).toBeLessThan(before);
    // Nothing new was made by the replay.
    expect(await countOf(pool, "notifications WHERE event_id = $1", [replayed])).toBe(0);
  }, 60_000);
});
