// Owns handling one event exactly once: the inbox row (ON CONFLICT DO NOTHING) and everything the
// event makes — its notification, one pending delivery per webhook that wants it, and an e-mail
// delivery when the patient's contact is on record and e-mail is on — are one transaction, so a redelivered or replayed event finds its row and makes nothing new, and a crash
// before COMMIT leaves nothing behind (the entry is redelivered).
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { inTransaction } from "../shared/pg.ts";
import type { HandleResult } from "../shared/stream-consumer.ts";
import type { StreamEvent } from "../shared/stream-events.ts";
import { enqueueEmail } from "./email.ts";
import { handlers } from "./handlers.ts";
import { enqueueDeliveries } from "./webhooks.ts";

/**
 * new: handled now; duplicate: handled before; ignored: no handler (recorded, so never retried);
 * poison: payload unusable. `onDeliveries` hears (after COMMIT) that deliveries were made, so the
 * delivery worker need not wait for its next poll.
 */
export async function handleEvent(
  pool: pg.Pool,
  ev: StreamEvent,
  consumer: string,
  onDeliveries?: () => void,
  channels: { email: boolean } = { email: false },
): Promise<HandleResult> {
  const handler = handlers.get(ev.topic);
  const draft = handler?.draft(ev.payload);
  if (handler && !draft) return "poison";
  let deliveries = 0;
  const result = await inTransaction(pool, async (c): Promise<HandleResult> => {
    const first = await c.query(
      `INSERT INTO inbox (event_id, topic, stream_entry_id, consumer) VALUES ($1, $2, $3, $4)
       ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
      [ev.eventId, ev.topic, ev.entryId, consumer],
    );
    if (first.rowCount === 0) {
      // Seen again (a redelivery or a relay's replay, which makes the producer keep the row for
      // another outbox window): the inbox keeps it for a retention from now (pruner.ts).
      await c.query("UPDATE inbox SET seen_at = now() WHERE event_id = $1", [ev.eventId]);
      return "duplicate";
    }
    if (!draft) return "ignored";
    const id = randomUUID();
    const patient = draft.audience === "patient" ? draft : undefined;
    const clinicId = patient?.clinicId ?? null;
    const n = await c.query<{ created_at: Date }>(
      `INSERT INTO notifications (id, event_id, audience, patient_id, clinic_id, clinic_code, kind, subject, body)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING created_at`,
      [
        id,
        ev.eventId,
        draft.audience,
        patient?.patientId ?? null,
        clinicId,
        draft.audience === "staff" ? draft.clinicCode : null,
        draft.kind,
        draft.subject,
        draft.body,
      ],
    );
    deliveries = await enqueueDeliveries(c, {
      eventId: ev.eventId,
      topic: ev.topic,
      clinicId,
      payload: {
        id: ev.eventId,
        type: ev.topic,
        createdAt: n.rows[0]!.created_at.toISOString(),
        data: {
          notificationId: id,
          kind: draft.kind,
          ...(patient ? { patientId: patient.patientId, clinicId: patient.clinicId } : {}),
          ...draft.data,
          subject: draft.subject,
        },
      },
    });
    if (patient && channels.email) {
      deliveries += await enqueueEmail(c, {
        eventId: ev.eventId,
        topic: ev.topic,
        patientId: patient.patientId,
        message: draft,
      });
    }
    return "new";
  });
  if (deliveries > 0) onDeliveries?.();
  return result;
}
