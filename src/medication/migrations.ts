// Owns the medication database schema as versioned migrations (run by migrate.ts): prescriptions
// (FHIR MedicationRequest), their dispenses (MedicationDispense) with what the stock gave, and the
// outbox of prescription events.
import type { Migration } from "../shared/migrate.ts";

export const migrations: Migration[] = [
  {
    version: 1,
    name: "prescriptions, dispenses, outbox",
    sql: `
      CREATE TABLE prescriptions (
        id uuid PRIMARY KEY,
        -- Unique: the same key is the same prescription, whoever races to insert it.
        idempotency_key text NOT NULL UNIQUE,
        request_hash text NOT NULL,
        appointment_id uuid NOT NULL,
        clinic text NOT NULL,
        -- The appointment's clinic id too: events name the clinic by both.
        clinic_id uuid NOT NULL,
        patient_id uuid NOT NULL,
        medication_code text NOT NULL,
        quantity bigint NOT NULL CHECK (quantity > 0),
        dosage jsonb NOT NULL,
        status text NOT NULL CHECK (status IN ('active', 'completed', 'cancelled', 'stopped', 'entered-in-error')),
        status_reason text,
        -- Milliseconds, as a page cursor carries it: a cursor never falls between two rows' times.
        created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX prescriptions_appointment ON prescriptions (appointment_id, created_at, id);

      -- One dispense per prescription. deduct_request_id is what inventory remembers it by; the
      -- recovery loop retries with it, and only while inventory still remembers it.
      CREATE TABLE dispenses (
        id uuid PRIMARY KEY,
        prescription_id uuid NOT NULL UNIQUE REFERENCES prescriptions(id),
        status text NOT NULL CHECK (status IN ('in-progress', 'completed', 'declined', 'cancelled', 'reconcile')),
        status_reason text,
        lots jsonb NOT NULL DEFAULT '[]',
        inventory_index bigint NOT NULL DEFAULT 0,
        attempts int NOT NULL DEFAULT 0,
        -- After a cancel: none → in-progress (ReturnStock asked) → returned.
        return_status text NOT NULL DEFAULT 'none' CHECK (return_status IN ('none', 'in-progress', 'returned', 'reconcile')),
        return_started_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX dispenses_unsettled ON dispenses (updated_at) WHERE status = 'in-progress';
      CREATE INDEX dispenses_returning ON dispenses (updated_at) WHERE return_status = 'in-progress';

      CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        relayed_at timestamptz
      );
      CREATE INDEX outbox_unrelayed ON outbox (id) WHERE relayed_at IS NULL;
      CREATE INDEX outbox_relayed ON outbox (relayed_at) WHERE relayed_at IS NOT NULL;
    `,
  },
  {
    version: 2,
    name: "cancelled appointments, so a prescription racing its appointment's cancel is refused",
    sql: `
      -- Written when the medication service handles an appointment's cancel, under the same
      -- per-appointment lock as a prescription's insert: whichever commits second sees the other.
      CREATE TABLE cancelled_appointments (
        appointment_id uuid PRIMARY KEY,
        cancelled_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX cancelled_appointments_at ON cancelled_appointments (cancelled_at);
    `,
  },
];
