// Owns the notification database schema as versioned migrations (run by migrate.ts): the inbox of
// handled events, the notifications they made, the webhooks and each event's deliveries to them,
// patients' e-mail contacts (sealed) and staff alerts.
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
  {
    version: 2,
    name: "webhooks, webhook deliveries, inbox last seen",
    sql: `
      -- When the inbox last saw the event (first handling or any redelivery): a relay replay makes
      -- a row's relayed_at new again, so the inbox must be kept from its last sighting, not its
      -- first, for its retention to cover every replay window (pruner.ts).
      ALTER TABLE inbox ADD COLUMN seen_at timestamptz NOT NULL DEFAULT now();
      CREATE INDEX inbox_seen ON inbox (seen_at);
      CREATE INDEX notifications_created ON notifications (created_at);

      -- A receiver of events. The secret signs every delivery; it is kept to sign with (HMAC needs
      -- it) and answered only when the webhook is created.
      CREATE TABLE webhooks (
        id uuid PRIMARY KEY,
        url text NOT NULL,
        events text[] NOT NULL CHECK (cardinality(events) > 0),
        clinic_id uuid,
        secret text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX webhooks_created ON webhooks (created_at, id);

      -- One row per (webhook, event): made in the transaction that handled the event, so an event
      -- is never delivered to a webhook twice by row, whatever the stream redelivers. payload is the
      -- exact body, so every attempt and redelivery sends the same bytes. lease_id is the claim of
      -- the attempt in flight: its result is written only while the claim still holds.
      CREATE TABLE webhook_deliveries (
        id uuid PRIMARY KEY,
        webhook_id uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id text NOT NULL,
        topic text NOT NULL,
        payload text NOT NULL,
        status text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
        attempts int NOT NULL DEFAULT 0,
        next_attempt_at timestamptz,
        lease_id uuid,
        attempted_by text,
        last_status_code int,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (webhook_id, event_id)
      );
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
      CREATE INDEX webhook_deliveries_page ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
      CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
      CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at) WHERE status <> 'pending';
    `,
  },
  {
    version: 3,
    name: "contacts, e-mail deliveries, staff alerts",
    sql: `
      -- A patient's e-mail address, sealed with AES-256-GCM under NOTIFICATION_CONTACT_KEY
      -- (contacts.ts: format byte, IV, tag, ciphertext; the patient id is the associated data).
      CREATE TABLE contacts (
        patient_id uuid PRIMARY KEY,
        email bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );

      -- Every channel's deliveries live in one table, claimed by one worker under one retry policy
      -- (deliveries.ts); the table keeps its first name. An e-mail delivery has no webhook and
      -- carries the sealed address it goes to (copied from contacts when the event was handled);
      -- its payload is the message ({subject, body}). One per event by schema.
      ALTER TABLE webhook_deliveries
        ADD COLUMN channel text NOT NULL DEFAULT 'webhook' CHECK (channel IN ('webhook', 'email')),
        ADD COLUMN recipient bytea,
        ALTER COLUMN webhook_id DROP NOT NULL,
        ADD CONSTRAINT webhook_deliveries_channel CHECK (
          (channel = 'webhook' AND webhook_id IS NOT NULL AND recipient IS NULL) OR
          (channel = 'email' AND webhook_id IS NULL AND recipient IS NOT NULL));
      CREATE UNIQUE INDEX webhook_deliveries_email ON webhook_deliveries (event_id) WHERE channel = 'email';

      -- A staff alert (inventory.low-stock) is a notification of no patient, for a clinic named by
      -- its code (the inventory knows clinics by code, not by id).
      ALTER TABLE notifications
        ADD COLUMN audience text NOT NULL DEFAULT 'patient' CHECK (audience IN ('patient', 'staff')),
        ADD COLUMN clinic_code text,
        ALTER COLUMN patient_id DROP NOT NULL,
        ALTER COLUMN clinic_id DROP NOT NULL,
        ADD CONSTRAINT notifications_audience CHECK (
          (audience = 'patient' AND patient_id IS NOT NULL AND clinic_id IS NOT NULL) OR
          (audience = 'staff' AND patient_id IS NULL AND clinic_code IS NOT NULL));
      CREATE INDEX notifications_staff ON notifications (clinic_code, created_at DESC, id DESC)
        WHERE audience = 'staff';
    `,
  },
];
