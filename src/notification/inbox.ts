// Owns handling one event exactly once: the inbox row (ON CONFLICT DO NOTHING) and everything the
// event makes are one transaction, so a redelivered or replayed event finds its row and makes
// nothing new, and a crash before COMMIT leaves nothing behind (the entry is redelivered).
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { inTransaction } from "../shared/pg.ts";
import type { HandleResult } from "../shared/stream-consumer.ts";
import type { StreamEvent } from "../shared/stream-events.ts";
import { handlers } from "./handlers.ts";

/** new: handled now; duplicate: handled before; ignored: no handler (recorded, so never retried); poison: payload unusable. */

export async function handleEvent(pool: pg.Pool, ev: StreamEvent, consumer: string): Promise<HandleResult> {
  const handler = handlers.get(ev.topic);
  const draft = handler?.draft(ev.payload);
  if (handler && !draft) return "poison";
  return inTransaction(pool, async (c) => {
    const first = await c.query(
      `INSERT INTO inbox (event_id, topic, stream_entry_id, consumer) VALUES ($1, $2, $3, $4)
       ON CONFLICT (event_id) DO NOTHING RETURNING event_id`,
      [ev.eventId, ev.topic, ev.entryId, consumer],
    );
    if (first.rowCount === 0) return "duplicate";
    if (!draft) return "ignored";
    await c.query(
      `INSERT INTO notifications (id, event_id, patient_id, clinic_id, kind, subject, body)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [randomUUID(), ev.eventId, draft.patientId, draft.clinicId, draft.kind, draft.subject, draft.body],
    );
    return "new";
  });
}
