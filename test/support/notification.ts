// Notification-test plumbing: a config with a notification database of the test's own, resetting
// it, bookings and cancellations in bursts through the real appointment service, counting, and
// real webhook receivers and a real SMTP server on loopback.
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import type { Config } from "../../src/shared/config.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import { type ClinicFixture, datesFrom, makeClinic } from "./fixtures.ts";
import { type Instance, PG_BASE, resetState, testConfig, testName } from "./services.ts";

export function notificationTestConfig(base: string, env: Record<string, string> = {}): Config {
  return testConfig(base, {
    NOTIFICATION_DATABASE_URL: `${PG_BASE}/medisync_test_${testName(base)}_notification`,
    NOTIFICATION_OPS_PORT: "0",
    NOTIFICATION_GRPC_PORT: "0",
    NOTIFICATION_CLAIM_IDLE_MS: "1000",
    // Webhook receivers in tests listen on loopback.
    NOTIFICATION_WEBHOOK_ALLOW_PRIVATE: "true",
    ...env,
  });
}

/** Drops both databases and the test's Redis keys. */
export async function resetNotificationState(cfg: Config): Promise<void> {
  await resetState(cfg);
  const name = new URL(cfg.NOTIFICATION_DATABASE_URL).pathname.slice(1);
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** A clinic with `slots` bookable slots (spread over days far in the future). */
export async function bigClinic(pool: pg.Pool, slots: number): Promise<ClinicFixture> {
  const perDay = 16;
  return makeClinic(pool, datesFrom("2032-03-01", Math.ceil(slots / perDay)), perDay);
}

/**
 * Books every slot (concurrency `parallel`) and cancels every `cancelEvery`-th booking; resolves
 * the number of events produced (bookings + cancellations).
 */
export async function burst(
  inst: Instance,
  fx: ClinicFixture,
  opts: { parallel: number; cancelEvery: number; onProgress?: (done: number) => void | Promise<void> },
): Promise<number> {
  const slots = [...fx.days.values()].flat();
  let next = 0;
  let events = 0;
  const worker = async () => {
    while (next < slots.length) {
      const i = next++;
      const r = await callUnary(
        inst.client.book.bind(inst.client),
        { slotId: slots[i]!.id, patientId: randomUUID(), idempotencyKey: randomUUID() },
        10_000,
      );
      events++;
      if (i % opts.cancelEvery === 0) {
        await callUnary(inst.client.cancel.bind(inst.client), { appointmentId: r.appointment!.id }, 10_000);
        events++;
      }
      await opts.onProgress?.(events);
    }
  };
  await Promise.all(Array.from({ length: opts.parallel }, worker));
  return events;
}

export { until } from "./until.ts";

export async function countOf(pool: pg.Pool, sql: string, params: readonly unknown[] = []): Promise<number> {
  return (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, [...params])).rows[0]!.n;
}

/** One request a webhook receiver got. */
export interface Received {
  eventId: string;
  deliveryId: string;
  signature: string;
  body: string;
  answered: number;
}

/**
 * A real webhook receiver on loopback (node:http): records every request and answers what
 * `answer` says (by how many times it has seen the event before), 200 by default.
 */
export class Receiver {
  readonly received: Received[] = [];
  answer: (eventId: string, seenBefore: number) => number = () => 200;
  private server: Server | undefined;
  url = "";

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const eventId = String(req.headers["medisync-event-id"] ?? "");
        const seenBefore = this.received.filter((r) => r.eventId === eventId).length;
        const answered = this.answer(eventId, seenBefore);
        this.received.push({
          eventId,
          deliveryId: String(req.headers["medisync-delivery-id"] ?? ""),
          signature: String(req.headers["medisync-signature"] ?? ""),
          body: Buffer.concat(chunks).toString("utf8"),
          answered,
        });
        res.writeHead(answered, { "content-type": "text/plain" });
        res.end("ok");
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
    return this;
  }

  eventIds(): Set<string> {
    return new Set(this.received.map((r) => r.eventId));
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Checks a MediSync-Signature header against the body and secret, as a receiver would. */
export function signatureValid(
  header: string,
  body: string,
  secret: string,
  toleranceSeconds = 300,
): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(Date.now() / 1000 - t) > toleranceSeconds) return false;
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
  return timingSafeEqual(Buffer.from(expected), Buffer.from(m[2]!));
}

/** One message a test SMTP server accepted, its headers unfolded and decoded. */
export interface Mail {
  /** The envelope's recipients (RCPT TO). */
  rcptTo: string[];
  headers: Map<string, string>;
  subject: string;
  to: string;
  eventId: string;
  text: string;
  raw: string;
}

/** =?UTF-8?Q?…?= / =?UTF-8?B?…?= words of a header (RFC 2047), adjacent words joined. */
function decodeWords(v: string): string {
  return v
    .replace(/\?=\s+=\?/g, "?==?")
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, enc: string, text: string) =>
      enc.toUpperCase() === "B"
        ? Buffer.from(text, "base64").toString("utf8")
        : Buffer.from(
            text
              .replace(/_/g, " ")
              .replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
            "latin1",
          ).toString("utf8"),
    );
}

function quotedPrintable(s: string): string {
  const bytes = s
    .replace(/=\r?\n/g, "")
    .replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  return Buffer.from(bytes, "latin1").toString("utf8");
}

export function parseMail(raw: string, rcptTo: string[]): Mail {
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const headers = new Map<string, string>();
  for (const line of head.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  let text = raw.slice(split + 4);
  const cte = (headers.get("content-transfer-encoding") ?? "7bit").toLowerCase();
  if (cte === "quoted-printable") text = quotedPrintable(text);
  else if (cte === "base64") text = Buffer.from(text.replace(/\s+/g, ""), "base64").toString("utf8");
  return {
    rcptTo,
    headers,
    subject: decodeWords(headers.get("subject") ?? ""),
    to: decodeWords(headers.get("to") ?? ""),
    eventId: headers.get("medisync-event-id") ?? "",
    text: text.replace(/\r\n$/, ""),
    raw,
  };
}

/**
 * A real SMTP server on loopback (smtp-server, no TLS, no auth): keeps every message it accepts, and
 * answers DATA with `answer(eventId, seenBefore)` — 250 accepts, any 4xx/5xx refuses (not kept).
 */
export class SmtpSink {
  readonly received: Mail[] = [];
  /** Every DATA seen, refused ones too (event ids). */
  readonly attempts: string[] = [];
  answer: (eventId: string, seenBefore: number) => number = () => 250;
  /** Connections that ended in an error (a sender SIGKILLed mid-conversation resets its socket). */
  connectionErrors = 0;
  private server: SMTPServer | undefined;
  port = 0;

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    this.server = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS", "AUTH"],
      logger: false,
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => {
          const mail = parseMail(
            Buffer.concat(chunks).toString("latin1"),
            session.envelope.rcptTo.map((r) => r.address),
          );
          const seenBefore = this.attempts.filter((e) => e === mail.eventId).length;
          this.attempts.push(mail.eventId);
          const code = this.answer(mail.eventId, seenBefore);
          if (code >= 400) {
            callback(Object.assign(new Error(`refused by the test (${code})`), { responseCode: code }));
            return;
          }
          this.received.push(mail);
          callback(null);
        });
      },
    });
    // smtp-server emits a connection's socket errors on the server: without a listener, the reset
    // of a sender the test SIGKILLed is an uncaught exception of the whole test process.
    this.server.on("error", () => {
      this.connectionErrors++;
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.server.address() as AddressInfo).port;
    return this;
  }

  eventIds(): Set<string> {
    return new Set(this.received.map((m) => m.eventId));
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
