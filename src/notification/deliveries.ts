// Owns sending deliveries of every channel: claiming due rows (FOR UPDATE SKIP LOCKED, so several
// instances share the work and never claim one row together), sending each — a webhook signed and
// POSTed, an e-mail handed to the SMTP server (email.ts) — and recording the outcome: delivered on
// 2xx (webhook) or the server's acceptance (e-mail); otherwise retried after an exponential backoff
// with full jitter, and dead once its attempts are used up. This is the one retry policy. A claim is a lease: an instance that dies mid-attempt leaves
// the row to be claimed again once the lease passes (at least once; receivers dedupe on
// MediSync-Event-Id), and a result is written only while its claim still holds.
import { createHmac, randomUUID } from "node:crypto";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { LookupFunction } from "node:net";
import type pg from "pg";
import type { Logger } from "pino";
import { AppError } from "../shared/errors.ts";
import { counter } from "../shared/metrics.ts";
import type { ContactCipher } from "./contacts.ts";
import type { Mailer } from "./email.ts";
import { resolveTarget } from "./webhook-url.ts";

/** An attempt is given this long in all: connect, send, the receiver's answer. */
export const deliveryTimeoutMs = 10_000;
/** A claim lasts this long: well past one attempt, so a live attempt never loses its row to another instance. */
const leaseMs = deliveryTimeoutMs + 20_000;
/** Retries wait at most this long, whatever the attempt. */
export const backoffMsLimit = 3_600_000;
/** Rows one claim takes at most (sent in parallel). */
const claimRowsMax = 16;
/** How often an idle worker looks for due rows (new deliveries wake it at once in-process). */
const pollIntervalMs = 200;
/** Characters of last_error kept: what failed, never a response body. */
const lastErrorMax = 200;

const attemptsTotal = counter(
  "medisync_notification_webhook_attempts_total",
  "webhook delivery attempts by result (delivered, failed)",
  ["result"],
);
const deadTotal = counter(
  "medisync_notification_webhook_dead_total",
  "webhook deliveries given up after their last attempt",
  [],
);
const emailAttemptsTotal = counter(
  "medisync_notification_email_attempts_total",
  "e-mail delivery attempts by result (delivered, failed)",
  ["result"],
);
const emailDeadTotal = counter(
  "medisync_notification_email_dead_total",
  "e-mail deliveries given up after their last attempt",
  [],
);

/** Full jitter (AWS's "Exponential Backoff And Jitter"): uniform in [0, min(limit, base × 2^(attempt-1))]. */
export function backoffMs(
  attempt: number,
  backoffMsBase: number,
  random: () => number = Math.random,
): number {
  const ceilingMs = Math.min(backoffMsLimit, backoffMsBase * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceilingMs);
}

/** The MediSync-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>. */
export function signature(secret: string, body: string, unixSeconds: number): string {
  const v1 = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${v1}`;
}

export interface DeliveryWorkerOptions {
  pool: pg.Pool;
  log: Logger;
  /** Names this instance in attempted_by. */
  instance: string;
  attemptsMax: number;
  backoffMsBase: number;
  allowPrivate: boolean;
  /** The e-mail channel, when on (SMTP_URL and a contact key): without it e-mail rows are not claimed. */
  email?: { mailer: Mailer; cipher: ContactCipher };
}

type Channel = "webhook" | "email";

interface Claimed {
  id: string;
  channel: Channel;
  webhook_id: string | null;
  event_id: string;
  payload: string;
  attempts: number;
  url: string | null;
  secret: string | null;
  recipient: Buffer | null;
  patient_id: string | null;
}

type Outcome = { ok: true; statusCode: number } | { ok: false; statusCode: number | null; error: string };

/** POSTs `body` to `url`, connected to the address the URL check returned (no second lookup). */
async function post(url: URL, headers: Record<string, string>, body: string, allowPrivate: boolean) {
  const target = await resolveTarget(url, allowPrivate);
  const lookup: LookupFunction = (_host, options, callback) => {
    if (options.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  return new Promise<IncomingMessage & { statusCode: number }>((resolve, reject) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(url, {
      method: "POST",
      headers: { ...headers, "content-length": String(Buffer.byteLength(body)) },
      lookup,
      agent: false,
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`timeout after ${deliveryTimeoutMs} ms`)),
      deliveryTimeoutMs,
    );
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on("response", (res) => {
      // The answer's body means nothing to us: read and dropped, within the same deadline.
      res.on("error", () => undefined);
      res.resume();
      res.on("end", () => {
        clearTimeout(timer);
        resolve(res as IncomingMessage & { statusCode: number });
      });
    });
    req.end(body);
  });
}

async function attempt(
  d: Claimed & { url: string; secret: string },
  allowPrivate: boolean,
): Promise<Outcome> {
  const headers = {
    "content-type": "application/json",
    "user-agent": "MediSync-Webhooks/1",
    "medisync-event-id": d.event_id,
    "medisync-delivery-id": d.id,
    "medisync-signature": signature(d.secret, d.payload, Math.floor(Date.now() / 1000)),
  };
  try {
    const res = await post(new URL(d.url), headers, d.payload, allowPrivate);
    if (res.statusCode >= 200 && res.statusCode < 300) return { ok: true, statusCode: res.statusCode };
    // A redirect is a failure too: following it could lead to an address never checked.
    return { ok: false, statusCode: res.statusCode, error: `HTTP ${res.statusCode}` };
  } catch (err) {
    // The refusal of an address says why; a socket error by its code (ECONNREFUSED), not its text.
    const e = err as { code?: string; message?: string };
    const error = err instanceof AppError ? err.message : (e.code ?? e.message ?? "failed");
    return { ok: false, statusCode: null, error: error.slice(0, lastErrorMax) };
  }
}

/**
 * Hands one e-mail to the SMTP server within the attempt's deadline. The address is decrypted here
 * and goes nowhere else: a failure is recorded by code (ECONNECTION, ETIMEDOUT) or SMTP reply code,
 * never by the server's text, which may quote the address.
 */
async function attemptEmail(d: Claimed, email: { mailer: Mailer; cipher: ContactCipher }): Promise<Outcome> {
  let to: string;
  try {
    to = email.cipher.decrypt(d.patient_id ?? "", d.recipient ?? Buffer.alloc(0));
  } catch {
    return { ok: false, statusCode: null, error: "contact does not decrypt with this key" };
  }
  const m = JSON.parse(d.payload) as { subject: string; body: string };
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      email.mailer.send({ to, subject: m.subject, body: m.body, eventId: d.event_id, deliveryId: d.id }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(Object.assign(new Error("timeout"), { code: `timeout after ${deliveryTimeoutMs} ms` })),
          deliveryTimeoutMs,
        );
      }),
    ]);
    return { ok: true, statusCode: 250 };
  } catch (err) {
    const e = err as { code?: string; responseCode?: number };
    const error = e.responseCode ? `SMTP ${e.responseCode}` : (e.code ?? "failed");
    return { ok: false, statusCode: e.responseCode ?? null, error: error.slice(0, lastErrorMax) };
  } finally {
    clearTimeout(timer);
  }
}

export class DeliveryWorker {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private kicked = false;

  constructor(private readonly o: DeliveryWorkerOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** New deliveries exist: look now instead of at the next poll. */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let claimed = 0;
      try {
        claimed = await this.round();
      } catch (err) {
        // PostgreSQL away: rows stay as they are; the next round picks them up.
        this.o.log.warn({ err: (err as Error).message }, "delivery round failed (webhooks and e-mail)");
      }
      if (claimed >= claimRowsMax || this.stopped) continue;
      if (this.kicked) {
        this.kicked = false;
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollIntervalMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      this.kicked = false;
    }
  }

  /** One round: give up rows whose last attempt died with its instance, claim due rows, send them. */
  async round(): Promise<number> {
    const { pool, attemptsMax } = this.o;
    const exhausted = await pool.query<{
      id: string;
      channel: Channel;
      webhook_id: string | null;
      event_id: string;
      attempts: number;
    }>(
      `UPDATE webhook_deliveries
          SET status = 'dead', next_attempt_at = NULL, lease_id = NULL, updated_at = now(),
              last_error = coalesce(last_error, 'attempt interrupted')
        WHERE status = 'pending' AND attempts >= $1 AND next_attempt_at <= now()
        RETURNING id, channel, webhook_id, event_id, attempts`,
      [attemptsMax],
    );
    for (const d of exhausted.rows) this.dead(d);
    const lease = randomUUID();
    // An instance without the e-mail channel leaves e-mail rows to one that has it.
    const channels: Channel[] = this.o.email ? ["webhook", "email"] : ["webhook"];
    const claimed = await pool.query<Claimed>(
      `WITH due AS (
         SELECT id FROM webhook_deliveries
          WHERE status = 'pending' AND next_attempt_at <= now() AND attempts < $1
            AND channel = ANY ($6::text[])
          ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED),
       claimed AS (
         UPDATE webhook_deliveries d
            SET attempts = d.attempts + 1, lease_id = $3, attempted_by = $4, updated_at = now(),
                next_attempt_at = now() + make_interval(secs => $5)
           FROM due
          WHERE d.id = due.id
          RETURNING d.id, d.channel, d.webhook_id, d.event_id, d.payload, d.attempts, d.recipient)
       SELECT c.*, w.url, w.secret, n.patient_id
         FROM claimed c
         LEFT JOIN webhooks w ON w.id = c.webhook_id
         LEFT JOIN notifications n ON n.event_id = c.event_id`,
      [attemptsMax, claimRowsMax, lease, this.o.instance, leaseMs / 1000, channels],
    );
    await Promise.all(claimed.rows.map((d) => this.deliver(d, lease)));
    return claimed.rows.length;
  }

  private async send(d: Claimed): Promise<Outcome> {
    if (d.channel === "email") {
      if (!this.o.email) return { ok: false, statusCode: null, error: "e-mail channel off" };
      const outcome = await attemptEmail(d, this.o.email);
      emailAttemptsTotal.inc({ result: outcome.ok ? "delivered" : "failed" });
      return outcome;
    }
    // The webhook was deleted with its rows (ON DELETE CASCADE): nothing to claim then.
    const outcome = await attempt({ ...d, url: d.url ?? "", secret: d.secret ?? "" }, this.o.allowPrivate);
    attemptsTotal.inc({ result: outcome.ok ? "delivered" : "failed" });
    return outcome;
  }

  private async deliver(d: Claimed, lease: string): Promise<void> {
    const outcome = await this.send(d);
    if (outcome.ok) {
      await this.o.pool.query(
        `UPDATE webhook_deliveries
            SET status = 'delivered', next_attempt_at = NULL, lease_id = NULL, last_status_code = $3,
                last_error = NULL, updated_at = now()
          WHERE id = $1 AND lease_id = $2`,
        [d.id, lease, outcome.statusCode],
      );
      return;
    }
    const last = d.attempts >= this.o.attemptsMax;
    const r = await this.o.pool.query(
      `UPDATE webhook_deliveries
          SET status = $3, lease_id = NULL, last_status_code = $4, last_error = $5, updated_at = now(),
              next_attempt_at = CASE WHEN $3 = 'dead' THEN NULL ELSE now() + make_interval(secs => $6) END
        WHERE id = $1 AND lease_id = $2`,
      [
        d.id,
        lease,
        last ? "dead" : "pending",
        outcome.statusCode,
        outcome.error,
        backoffMs(d.attempts, this.o.backoffMsBase) / 1000,
      ],
    );
    if (last && (r.rowCount ?? 0) > 0) this.dead(d);
  }

  private dead(d: {
    id: string;
    channel: Channel;
    webhook_id: string | null;
    event_id: string;
    attempts: number;
  }): void {
    if (d.channel === "email") {
      emailDeadTotal.inc();
      this.o.log.warn(
        { event: "email_dead", deliveryId: d.id, eventId: d.event_id, attempts: d.attempts },
        "e-mail delivery given up after its last attempt",
      );
      return;
    }
    deadTotal.inc();
    this.o.log.warn(
      {
        event: "webhook_dead",
        deliveryId: d.id,
        webhookId: d.webhook_id,
        eventId: d.event_id,
        attempts: d.attempts,
      },
      "webhook delivery given up after its last attempt",
    );
  }
}
