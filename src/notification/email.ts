// Owns the e-mail channel: the pending e-mail delivery an event makes for a patient whose contact
// is on record (inside the inbox's transaction, the sealed address copied with it), and the mailer
// that hands one to the SMTP server (nodemailer, SMTP_URL). Claiming, retries, backoff and dead
// letters are deliveries.ts's, the same as for webhooks. No SMTP_URL (or no contact key): the
// channel is off — nothing is enqueued, nothing is sent.

import { createTransport } from "nodemailer";
import type pg from "pg";
import type { Message } from "./messages.ts";

/** Sends one message; rejects with an error whose code/responseCode say why (never the address). */
export interface Mailer {
  send(m: { to: string; subject: string; body: string; eventId: string; deliveryId: string }): Promise<void>;
  close(): void;
}

export function smtpMailer(opts: { url: string; from: string; timeoutMs: number }): Mailer {
  const transport = createTransport({
    url: opts.url,
    pool: true,
    maxConnections: 4,
    connectionTimeout: opts.timeoutMs,
    greetingTimeout: opts.timeoutMs,
    socketTimeout: opts.timeoutMs,
    logger: false,
  });
  return {
    async send(m) {
      await transport.sendMail({
        from: opts.from,
        to: m.to,
        subject: m.subject,
        text: m.body,
        // Stable per delivery: a resend after a lost answer carries the same Message-ID, and
        // MediSync-Event-Id (as on webhooks) lets a reader dedupe by event.
        messageId: `<${m.deliveryId}@medisync.invalid>`,
        headers: { "MediSync-Event-Id": m.eventId, "MediSync-Delivery-Id": m.deliveryId },
      });
    },
    close() {
      transport.close();
    },
  };
}

/**
 * One pending e-mail delivery when the patient has a contact (the sealed address is copied: the
 * delivery goes to the address on record when the event was handled). Returns how many (0 or 1).
 */
export async function enqueueEmail(
  c: pg.PoolClient,
  ev: { eventId: string; topic: string; patientId: string; message: Message },
): Promise<number> {
  const r = await c.query(
    `INSERT INTO webhook_deliveries (id, channel, event_id, topic, payload, recipient, status, next_attempt_at)
     SELECT gen_random_uuid(), 'email', $1, $2, $3, c.email, 'pending', now()
       FROM contacts c WHERE c.patient_id = $4
     ON CONFLICT DO NOTHING`,
    [
      ev.eventId,
      ev.topic,
      JSON.stringify({ subject: ev.message.subject, body: ev.message.body }),
      ev.patientId,
    ],
  );
  return r.rowCount ?? 0;
}
