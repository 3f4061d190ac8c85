// Owns the appointment database schema as versioned migrations. SQL lives in TypeScript so the
// built image needs no extra files; each version runs once, in order, inside one transaction.
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: "clinics, practitioners, slots, appointments, idempotency, versions, outbox",
    sql: `
      CREATE EXTENSION IF NOT EXISTS btree_gist;

      CREATE TABLE clinics (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        time_zone text NOT NULL
      );

      CREATE TABLE practitioners (
        id uuid PRIMARY KEY,
        clinic_id uuid NOT NULL REFERENCES clinics(id),
        name text NOT NULL
      );
      CREATE INDEX practitioners_clinic ON practitioners (clinic_id);

      -- local_date is the start's calendar date in the clinic's time zone, fixed at insert, so a
      -- day's slots are one index range whatever the server's zone.
      CREATE TABLE slots (
        id uuid PRIMARY KEY,
        clinic_id uuid NOT NULL REFERENCES clinics(id),
        practitioner_id uuid NOT NULL REFERENCES practitioners(id),
        starts_at timestamptz NOT NULL,
        ends_at timestamptz NOT NULL,
        local_date date NOT NULL,
        CHECK (ends_at > starts_at),
        -- A practitioner is never in two slots at once: the database says so, not the code.
        EXCLUDE USING gist (practitioner_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
      );
      CREATE INDEX slots_clinic_date ON slots (clinic_id, local_date, starts_at);

      CREATE TABLE appointments (
        id uuid PRIMARY KEY,
        slot_id uuid NOT NULL REFERENCES slots(id),
        patient_id uuid NOT NULL,
        status text NOT NULL CHECK (status IN ('booked', 'cancelled')),
        created_at timestamptz NOT NULL DEFAULT now(),
        cancelled_at timestamptz
      );
      -- Double booking is impossible: at most one active appointment per slot.
      CREATE UNIQUE INDEX appointments_one_active_per_slot ON appointments (slot_id) WHERE status = 'booked';

      -- The first outcome of each idempotency key: an appointment, or the error it got.
      CREATE TABLE booking_idempotency (
        key text PRIMARY KEY,
        request_hash text NOT NULL,
        appointment_id uuid REFERENCES appointments(id),
        error_code text,
        created_at timestamptz NOT NULL DEFAULT now()
      );

      -- Bumped in the same transaction as any change to a (clinic, date) slot set; caches tag
      -- entries with it.
      CREATE TABLE slot_versions (
        clinic_id uuid NOT NULL,
        local_date date NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (clinic_id, local_date)
      );

      CREATE TABLE outbox (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        payload jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        relayed_at timestamptz
      );
      CREATE INDEX outbox_unrelayed ON outbox (id) WHERE relayed_at IS NULL;
    `,
  },
  {
    version: 2,
    name: "indexes for pruning idempotency rows and relayed outbox rows by age",
    sql: `
      CREATE INDEX booking_idempotency_created ON booking_idempotency (created_at);
      CREATE INDEX outbox_relayed ON outbox (relayed_at) WHERE relayed_at IS NOT NULL;
    `,
  },
  {
    version: 3,
    name: "clinic codes: one stable code per clinic, the key of its stock in the inventory",
    // The rule that makes a code from a name lives in the database (clinic_code_for), so the rows
    // filled here and every clinic inserted later without a code (the trigger, whoever inserts) get
    // codes by one rule: lower case, a trailing " Clinic" dropped, every other run of characters
    // outside a-z and 0-9 made one '-', at most 50 characters, "clinic" when nothing is left; "-2",
    // "-3", … when taken. The CHECK keeps every code, given or made, inside the inventory's code
    // pattern (inventoryLimits.codePattern, at most codeMax = 64): lower case only, so no two
    // clinics differ by case alone. Nothing changes a code once given: the inventory keys stock by it.
    sql: `
      ALTER TABLE clinics ADD COLUMN code text;

      CREATE FUNCTION clinic_code_base(name text) RETURNS text
        LANGUAGE sql IMMUTABLE AS $$
          SELECT coalesce(
            nullif(
              trim(both '-' from left(
                trim(both '-' from regexp_replace(
                  regexp_replace(lower(name), '\\s+clinic\\s*$', ''), '[^a-z0-9]+', '-', 'g')),
                50)),
              ''),
            'clinic')
        $$;

      CREATE FUNCTION clinic_code_for(name text) RETURNS text
        LANGUAGE plpgsql AS $$
          DECLARE
            base text := clinic_code_base(name);
            candidate text := base;
            n int := 1;
          BEGIN
            WHILE EXISTS (SELECT 1 FROM clinics WHERE code = candidate) LOOP
              n := n + 1;
              candidate := base || '-' || n;
            END LOOP;
            RETURN candidate;
          END
        $$;

      -- A clinic inserted without a code gets one from its name.
      CREATE FUNCTION clinics_fill_code() RETURNS trigger
        LANGUAGE plpgsql AS $$
          BEGIN
            NEW.code := clinic_code_for(NEW.name);
            RETURN NEW;
          END
        $$;
      CREATE TRIGGER clinics_fill_code BEFORE INSERT ON clinics
        FOR EACH ROW WHEN (NEW.code IS NULL) EXECUTE FUNCTION clinics_fill_code();

      -- The clinics already there: one row at a time, in a fixed order, so each sees the codes
      -- given before it.
      DO $$
        DECLARE r record;
        BEGIN
          FOR r IN SELECT id, name FROM clinics ORDER BY name, id LOOP
            UPDATE clinics SET code = clinic_code_for(r.name) WHERE id = r.id;
          END LOOP;
        END
      $$;

      ALTER TABLE clinics ALTER COLUMN code SET NOT NULL;
      ALTER TABLE clinics ADD CONSTRAINT clinics_code_key UNIQUE (code);
      ALTER TABLE clinics ADD CONSTRAINT clinics_code_shape CHECK (code ~ '^[a-z0-9][a-z0-9-]{0,63}$');
    `,
  },
  {
    version: 4,
    name: "a patient's appointments: an index on patient_id for ListPatientAppointments",
    // The page order is the slot's start (another table), so no one index can hold (patient, start,
    // id); a patient has tens to hundreds of appointments, which this index finds and PostgreSQL
    // sorts in memory. Copying starts_at into appointments would make it an index scan, at the cost
    // of a second copy of a slot's time to keep equal.
    sql: `
      CREATE INDEX appointments_patient ON appointments (patient_id);
    `,
  },
];
