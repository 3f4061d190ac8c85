// Owns the notification database schema as versioned migrations (run by migrate.ts): the inbox of
// handled events, the notifications they made, and each notification's deliveries per channel.
import type { Migration } from "../shared/migrate.ts";

export const migrations: Migration[] = [
  {
    version: 1,
    name: "inbox, notifications",
    sql: `
      -- One row per event ever handled, keyed by the producer's stable id. It is written in the
      -- same transaction as what the event made, so a redelivered event finds its row and makes
      -- nothing new ("sent at least once, processed exactly once").
      CREATE TABLE inbox (
        event_id text PRIMARY KEY,
        topic text NOT NULL,
        stream_entry_id text NOT NULL,
        consumer text NOT NULL,
        handled_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX inbox_handled ON inbox (handled_at);

      -- What a patient is told. event_id is unique: one notification per event.
      CREATE TABLE notifications (
        id uuid PRIMARY KEY,
        event_id text NOT NULL UNIQUE REFERENCES inbox(event_id),
        patient_id uuid NOT NULL,
        clinic_id uuid NOT NULL,
        kind text NOT NULL,
        subject text NOT NULL,
        body text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX notifications_patient ON notifications (patient_id, created_at DESC, id DESC);
    `,
  },
];
