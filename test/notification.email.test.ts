// The e-mail channel end to end: real appointment service, notification service, gateway,
// PostgreSQL, Redis, and a real SMTP server (smtp-server) on loopback. A patient's contact is stored
// sealed (never in clear in the database or the logs); their later notifications arrive by e-mail
// with the notification's subject and body, to their address only; a server refusing for a while is
// retried, one refusing always makes the delivery dead after the limit; the channel status shows in
// the patient's notifications; bad input names the field; no SMTP_URL → the channel is off; no key →
// contacts refused.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localContactKey } from "../src/cli/supervisor.ts";
import { ContactCipher } from "../src/notification/contacts.ts";
import { type NotificationService, startNotificationService } from "../src/notification/server.ts";
import { loadConfig } from "../src/shared/config.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { createPool } from "../src/shared/pg.ts";
import type { ClinicFixture } from "./support/fixtures.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import {
  bigClinic,
  countOf,
  notificationTestConfig,
  resetNotificationState,
  SmtpSink,
  until,
} from "./support/notification.ts";
import { captureLogger, type Instance, startInstance, stopInstance, testPool } from "./support/services.ts";

const key = Buffer.alloc(32, 42).toString("base64");
const attemptsMax = 3;
const smtp = new SmtpSink();
const captured = captureLogger("notification");
// Every line the gateway and the appointment service write, for the log scan below.
const gatewayLines = captureLogger("gateway");
const appointmentLines = captureLogger("appointment");
let appt: Instance;
let apptPool: pg.Pool;
let pool: pg.Pool;
let gw: TestGateway;
let fx: ClinicFixture;
let slot = 0;
const services: NotificationService[] = [];
const gateways: TestGateway[] = [];

const cfgFor = (base: string, env: Record<string, string>) =>
  notificationTestConfig(base, {
    NOTIFICATION_WEBHOOK_ATTEMPTS_MAX: String(attemptsMax),
    NOTIFICATION_WEBHOOK_BACKOFF_MS_BASE: "20",
    ...env,
  });
let cfg: ReturnType<typeof cfgFor>;

async function system(c: ReturnType<typeof cfgFor>, id: string) {
  const s = await startNotificationService({ ...c, INSTANCE_ID: id }, captured.log);
  services.push(s);
  const g = await startGateway(
    { ...c, NOTIFICATION_ADDRS: [`127.0.0.1:${s.grpcPort}`] },
    [appt],
    gatewayLines.log,
  );
  gateways.push(g);
  return g;
}

beforeAll(async () => {
  await smtp.start();
  cfg = cfgFor("notif_email", { NOTIFICATION_CONTACT_KEY: key, SMTP_URL: smtp.url });
  await resetNotificationState(cfg);
  appt = await startInstance(cfg, appointmentLines.log, "appointment-email");
  apptPool = testPool(cfg);
  pool = createPool(cfg.NOTIFICATION_DATABASE_URL, 2);
  gw = await system(cfg, "notif-email");
  fx = await bigClinic(apptPool, 40);
}, 60_000);
afterAll(async () => {
  for (const g of gateways) await g.close();
  for (const s of services) await s.close();
  await smtp.close();
  await pool?.end();
  await apptPool?.end();
  if (appt) await stopInstance(appt);
});

const slots = () => [...fx.days.values()].flat();

async function book(patientId: string): Promise<string> {
  const s = slots()[slot++]!;
  const r = await callUnary(
    appt.client.book.bind(appt.client),
    { slotId: s.id, patientId, idempotencyKey: randomUUID() },
    10_000,
  );
  return r.appointment!.id;
}

async function cancel(appointmentId: string): Promise<void> {
  await callUnary(appt.client.cancel.bind(appt.client), { appointmentId }, 10_000);
}

async function setContact(base: string, patientId: string, email: string) {
  return http(base, "PUT", `/v1/patients/${patientId}/contact`, { email });
}

interface NotificationView {
  eventId: string;
  subject: string;
  body: string;
  channels: { channel: string; status: string; delivered: number; pending: number; dead: number }[];
}

async function notificationsOf(base: string, patientId: string): Promise<NotificationView[]> {
  const r = await http(base, "GET", `/v1/patients/${patientId}/notifications?limit=100`);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.items as unknown as NotificationView[];
}

const channel = (n: NotificationView, name: string) => n.channels.find((c) => c.channel === name);

function expectProblem(r: Awaited<ReturnType<typeof http>>, status: number, field: string) {
  expect(r.status, `${field}: ${JSON.stringify(r.json)}`).toBe(status);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  expect(r.json.field).toBe(field);
}

describe("e-mail channel", () => {
  const ann = randomUUID();
  const bob = randomUUID();
  const annEmail = "ann.patient@example.com";

  it("PUT contact stores the address sealed: never in clear in the database, never in the logs", async () => {
    const r = await setContact(gw.base, ann, annEmail);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toMatchObject({ patientId: ann, emailChannelOn: true });
    // Replacing it is the same call.
    expect((await setContact(gw.base, ann, annEmail)).status).toBe(200);
    const row = await pool.query<{ email: Buffer }>("SELECT email FROM contacts WHERE patient_id = $1", [
      ann,
    ]);
    expect(row.rows).toHaveLength(1);
    expect(row.rows[0]!.email.toString("latin1")).not.toContain(annEmail);
    expect(row.rows[0]!.email.toString("latin1")).not.toContain("example.com");
    expect(JSON.stringify(captured.lines)).not.toContain(annEmail);
  });

  it("a patient's notifications arrive by e-mail: the notification's subject and body, to their address only", async () => {
    const a1 = await book(ann);
    await cancel(a1);
    await book(bob); // no contact: no e-mail
    await until(async () => smtp.received.length >= 2, "two e-mails");
    await until(async () => (await countOf(pool, "notifications")) === 3, "three notifications");
    const rows = await pool.query<{ event_id: string; patient_id: string; subject: string; body: string }>(
      "SELECT event_id, patient_id, subject, body FROM notifications",
    );
    const annRows = rows.rows.filter((r) => r.patient_id === ann);
    const bobRow = rows.rows.find((r) => r.patient_id === bob)!;
    expect(annRows).toHaveLength(2);
    // Give a stray e-mail for bob's event time to show up before checking there is none.
    await new Promise((r) => setTimeout(r, 300));
    expect(smtp.received).toHaveLength(2);
    for (const n of annRows) {
      const mails = smtp.received.filter((m) => m.eventId === n.event_id);
      expect(mails).toHaveLength(1);
      const m = mails[0]!;
      expect(m.rcptTo).toEqual([annEmail]);
      expect(m.to).toBe(annEmail);
      expect(m.subject).toBe(n.subject);
      expect(m.text).toBe(n.body);
      expect(m.raw).not.toContain(bob);
      expect(m.raw).not.toContain(bobRow.event_id);
    }
    expect(smtp.eventIds().has(bobRow.event_id)).toBe(false);
    expect(JSON.stringify(captured.lines)).not.toContain(annEmail);

    await until(
      async () =>
        (await notificationsOf(gw.base, ann)).every((n) => channel(n, "email")?.status === "delivered"),
      "ann's e-mail channel delivered",
    );
    const annView = await notificationsOf(gw.base, ann);
    expect(annView).toHaveLength(2);
    for (const n of annView) {
      expect(channel(n, "email")).toEqual({
        channel: "email",
        status: "delivered",
        delivered: 1,
        pending: 0,
        dead: 0,
      });
      expect(channel(n, "webhook")?.status).toBe("none");
    }
    const bobView = await notificationsOf(gw.base, bob);
    expect(channel(bobView[0]!, "email")?.status).toBe("none");
  }, 60_000);

  it("a server refusing for a while (451) is retried, then the e-mail is delivered once", async () => {
    const carl = randomUUID();
    expect((await setContact(gw.base, carl, "carl@example.org")).status).toBe(200);
    smtp.answer = (_e, seenBefore) => (seenBefore < 2 ? 451 : 250);
    try {
      await book(carl);
      await until(
        async () =>
          (await notificationsOf(gw.base, carl))[0]?.channels.some((c) => c.status === "delivered") ?? false,
        "carl's e-mail delivered",
      );
      const [n] = await notificationsOf(gw.base, carl);
      expect(smtp.attempts.filter((e) => e === n!.eventId)).toHaveLength(3);
      expect(smtp.received.filter((m) => m.eventId === n!.eventId)).toHaveLength(1);
      const d = await pool.query<{ attempts: number; status: string }>(
        "SELECT attempts, status FROM webhook_deliveries WHERE channel = 'email' AND event_id = $1",
        [n!.eventId],
      );
      expect(d.rows).toEqual([{ attempts: 3, status: "delivered" }]);
    } finally {
      smtp.answer = () => 250;
    }
  }, 60_000);

  it("a server refusing always (550): dead after the limit, shown so; the reason is a code, not the address", async () => {
    const dana = randomUUID();
    const danaEmail = "dana@example.net";
    expect((await setContact(gw.base, dana, danaEmail)).status).toBe(200);
    smtp.answer = () => 550;
    try {
      await book(dana);
      await until(
        async () =>
          channel((await notificationsOf(gw.base, dana))[0] ?? ({ channels: [] } as never), "email")
            ?.status === "dead",
        "dana's e-mail dead",
      );
      const [n] = await notificationsOf(gw.base, dana);
      expect(channel(n!, "email")).toEqual({
        channel: "email",
        status: "dead",
        delivered: 0,
        pending: 0,
        dead: 1,
      });
      expect(smtp.attempts.filter((e) => e === n!.eventId)).toHaveLength(attemptsMax);
      const d = await pool.query<{ last_error: string; last_status_code: number }>(
        "SELECT last_error, last_status_code FROM webhook_deliveries WHERE channel = 'email' AND event_id = $1",
        [n!.eventId],
      );
      expect(d.rows[0]).toEqual({ last_error: "SMTP 550", last_status_code: 550 });
      expect(captured.lines.some((l) => l.event === "email_dead" && l.eventId === n!.eventId)).toBe(true);
      expect(JSON.stringify(captured.lines)).not.toContain(danaEmail);
    } finally {
      smtp.answer = () => 250;
    }
  }, 60_000);

  it("a redelivered event makes no second e-mail delivery", async () => {
    const before = await countOf(pool, "webhook_deliveries WHERE channel = 'email'");
    const mails = smtp.received.length;
    // Replay every event the stream holds: the inbox has them all.
    const { Redis } = await import("ioredis");
    const redis = new Redis(cfg.REDIS_URL);
    try {
      const stream = `${cfg.REDIS_KEY_PREFIX}events`;
      const entries = (await redis.xrange(stream, "-", "+")) as [string, string[]][];
      for (const [, fields] of entries) await redis.xadd(stream, "*", ...fields);
      // Read by the group (lag 0) and acknowledged (nothing pending): every replay handled.
      await until(async () => {
        const groups = (await redis.xinfo("GROUPS", stream)) as unknown[][];
        const g = groups.map(
          (x) => new Map(Array.from({ length: x.length / 2 }, (_, i) => [x[2 * i], x[2 * i + 1]])),
        );
        const ours = g.find((m) => m.get("name") === "notification");
        return ours?.get("lag") === 0 && ours.get("pending") === 0;
      }, "replayed entries handled");
      const seen = await countOf(pool, "inbox WHERE seen_at > handled_at");
      expect(seen).toBeGreaterThanOrEqual(entries.length);
    } finally {
      redis.disconnect();
    }
    expect(await countOf(pool, "webhook_deliveries WHERE channel = 'email'")).toBe(before);
    expect(smtp.received.length).toBe(mails);
  }, 60_000);

  it("a log scan finds no contact in any line of the gateway, appointment or notification service", () => {
    // By now contacts were stored, replaced, refused and e-mailed to, and deliveries retried and
    // failed: every line written meanwhile, at info, carries ids and codes only.
    const all = [...gatewayLines.lines, ...appointmentLines.lines, ...captured.lines];
    expect(gatewayLines.lines.length).toBeGreaterThan(10);
    expect(appointmentLines.lines.length).toBeGreaterThan(0);
    const text = JSON.stringify(all);
    expect(text).not.toContain(annEmail);
    expect(text).not.toContain("example.com");
    // Nothing shaped like an e-mail address, whoever's.
    expect(text.match(/[\w.+-]+@[\w-]+\.[\w.-]+/g) ?? []).toEqual([]);
  });

  it("bad input names the field (problem+json)", async () => {
    for (const email of [
      "",
      "no-at-sign",
      "two@@example.com",
      "a@b",
      "x <a@example.com>",
      "a@example.com, b@example.com",
      `${"a".repeat(250)}@example.com`,
    ]) {
      expectProblem(await setContact(gw.base, ann, email), 400, "email");
    }
    expectProblem(await http(gw.base, "PUT", `/v1/patients/${ann}/contact`, {}), 400, "email");
    expectProblem(await http(gw.base, "PUT", `/v1/patients/${ann}/contact`, { email: 5 }), 400, "email");
    expectProblem(
      await http(gw.base, "PUT", `/v1/patients/${ann}/contact`, { email: annEmail, phone: "1" }),
      400,
      "phone",
    );
    expectProblem(await setContact(gw.base, "not-a-uuid", annEmail), 400, "id");
  });
});

describe("e-mail off", () => {
  it("no SMTP_URL: the service runs, contacts are kept, notifications are made, nothing is e-mailed", async () => {
    const c = cfgFor("notif_email_nosmtp", { NOTIFICATION_CONTACT_KEY: key });
    await resetNotificationState(c);
    const g = await system(c, "notif-nosmtp");
    const p = createPool(c.NOTIFICATION_DATABASE_URL, 2);
    const { Redis } = await import("ioredis");
    const redis = new Redis(c.REDIS_URL);
    try {
      const patientId = randomUUID();
      const r = await setContact(g.base, patientId, "erin@example.com");
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.emailChannelOn).toBe(false);
      // An event as the appointment relay writes it, on this system's own stream.
      await redis.xadd(
        `${c.REDIS_KEY_PREFIX}events`,
        "*",
        "id",
        "1",
        "topic",
        "appointment.booked",
        "payload",
        JSON.stringify({
          appointmentId: randomUUID(),
          clinicId: randomUUID(),
          patientId,
          start: "2032-03-01T08:00:00.000Z",
          end: "2032-03-01T08:30:00.000Z",
          clinicName: "Quiet Clinic",
          timeZone: "UTC",
        }),
      );
      await until(async () => (await notificationsOf(g.base, patientId)).length === 1, "the notification");
      const [n] = await notificationsOf(g.base, patientId);
      expect(channel(n!, "email")?.status).toBe("none");
      expect(await countOf(p, "webhook_deliveries WHERE channel = 'email'")).toBe(0);
    } finally {
      redis.disconnect();
      await p.end();
    }
  }, 60_000);

  it("no NOTIFICATION_CONTACT_KEY: PUT contact is refused (503), nothing stored", async () => {
    const c = cfgFor("notif_email_nokey", { SMTP_URL: smtp.url });
    await resetNotificationState(c);
    const g = await system(c, "notif-nokey");
    const r = await setContact(g.base, randomUUID(), "fay@example.com");
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect(r.headers.get("content-type")).toBe("application/problem+json");
    expect(String(r.json.type)).toContain("contacts-disabled");
  }, 60_000);
});

describe("npm start's contact key", () => {
  it("is made once under data/ (0600, 32 bytes, a valid NOTIFICATION_CONTACT_KEY) and read back after", () => {
    const dir = mkdtempSync(join(tmpdir(), "medisync-key-"));
    try {
      const path = join(dir, "data", "notification-contact.key");
      const first = localContactKey(path);
      expect(localContactKey(path)).toBe(first);
      expect(readFileSync(path, "utf8").trim()).toBe(first);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(loadConfig({ NOTIFICATION_CONTACT_KEY: first }).NOTIFICATION_CONTACT_KEY).toBe(first);
      expect(() => new ContactCipher(first)).not.toThrow();
      expect(localContactKey(join(dir, "other.key"))).not.toBe(first);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
