// Owns the audit database's schema (medisync_audit, the gateway's own) as versioned migrations and
// runs them under the audit's advisory lock key: append-only tables of FHIR AuditEvent-shaped rows
// and of the outcomes appended to them, which the database itself refuses to update, delete or
// truncate, the answered-200 watermarks, and the view (audit_trail) that joins them.
import type pg from "pg";
import type { Logger } from "pino";
import { type Migration, runMigrations } from "../shared/migrate.ts";

export const auditMigrations: Migration[] = [
  {
    version: 1,
    name: "append-only audit events",
    sql: `
      CREATE TABLE audit_events (
        -- The order rows were written in: page cursors and "newest first" go by it.
        id bigserial PRIMARY KEY,
        -- The database's clock at the INSERT (one clock for every gateway instance).
        recorded_at timestamptz NOT NULL DEFAULT now(),
        -- The gateway's clock when the request was answered (a batch may wait a little to be written).
        occurred_at timestamptz NOT NULL,
        -- NULL actor: an unauthenticated request.
        actor_sub text,
        actor_role text CHECK (actor_role IN ('patient', 'clinician', 'pharmacist', 'admin')),
        action char(1) NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
        resource_type text NOT NULL,
        resource_id text,
        patient_id uuid,
        clinic text,
        -- The HTTP status the request was answered with.
        outcome smallint NOT NULL CHECK (outcome BETWEEN 100 AND 599),
        request_id text,
        source text,
        route text
      );
      -- GET /v1/audit?patientId=…: one patient's rows, newest first.
      CREATE INDEX audit_events_patient ON audit_events (patient_id, id DESC) WHERE patient_id IS NOT NULL;

      -- Append-only, whatever the code above does: a bug cannot rewrite or erase history. (The
      -- table's owner can still drop the trigger; that is a deliberate act, not a bug.)
      CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
          USING ERRCODE = 'insufficient_privilege';
      END;
      $$;
      CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
      CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
    `,
  },
  {
    version: 2,
    name: "audit rows written ahead of the act, outcomes appended after",
    sql: `
      -- A request the gateway admitted is recorded while its act runs (audit.ts begin()), before
      -- its outcome is known: such a row names its event, and the outcome arrives in audit_outcomes.
      -- A refused request is recorded whole, as before. Existing rows keep their outcomes.
      ALTER TABLE audit_events ALTER COLUMN outcome DROP NOT NULL;
      ALTER TABLE audit_events ADD COLUMN event uuid;
      -- NOT VALID: every existing row has its outcome, and validating would scan the whole trail
      -- under an exclusive lock while older gateways wait to write.
      ALTER TABLE audit_events ADD CONSTRAINT audit_events_outcome_or_event
        CHECK (outcome IS NOT NULL OR event IS NOT NULL) NOT VALID;

      CREATE TABLE audit_outcomes (
        event uuid PRIMARY KEY,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        -- The HTTP status the request was answered with.
        outcome smallint NOT NULL CHECK (outcome BETWEEN 100 AND 599),
        -- What a create made (its id is known only after the act).
        resource_id text
      );

      -- One refusal for both tables (it names the table): audit_events' triggers move to it.
      CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
          USING ERRCODE = 'insufficient_privilege';
      END;
      $$;
      DROP TRIGGER audit_events_no_update_delete ON audit_events;
      DROP TRIGGER audit_events_no_truncate ON audit_events;
      DROP FUNCTION audit_events_refuse_change();
      CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
      CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
      CREATE TRIGGER audit_outcomes_no_update_delete BEFORE UPDATE OR DELETE ON audit_outcomes
        FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
      CREATE TRIGGER audit_outcomes_no_truncate BEFORE TRUNCATE ON audit_outcomes
        FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

      -- The trail as readers see it: one row per event, its outcome wherever it was written. An
      -- outcome that never arrived (the gateway stopped between the act and its outcome row) is NULL.
      CREATE VIEW audit_trail AS
        SELECT e.id, e.recorded_at, e.occurred_at, e.actor_sub, e.actor_role, e.action, e.resource_type,
               COALESCE(o.resource_id, e.resource_id) AS resource_id, e.patient_id, e.clinic,
               COALESCE(e.outcome, o.outcome) AS outcome, e.request_id, e.source, e.route
          FROM audit_events e LEFT JOIN audit_outcomes o ON o.event = e.event;
    `,
  },
  {
    version: 3,
    name: "an answered-200 watermark per batch instead of an outcome row per request",
    sql: `
      -- A row written ahead names its writer (an epoch of one gateway's AuditLog) and its place in
      -- that writer's order. A request answered 200 that created nothing gets no outcome row: an
      -- audit_answered row says that every event of its writer with seq <= upto and no row in
      -- audit_outcomes was answered 200 (audit.ts, Epoch). Older gateways' rows have no writer and
      -- keep their outcome rows; reading them is unchanged.
      ALTER TABLE audit_events ADD COLUMN writer uuid, ADD COLUMN seq bigint;
      ALTER TABLE audit_events ADD CONSTRAINT audit_events_writer_and_seq
        CHECK ((writer IS NULL) = (seq IS NULL)) NOT VALID;

      CREATE TABLE audit_answered (
        writer uuid NOT NULL,
        upto bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (writer, upto)
      );
      CREATE TRIGGER audit_answered_no_update_delete BEFORE UPDATE OR DELETE ON audit_answered
        FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
      CREATE TRIGGER audit_answered_no_truncate BEFORE TRUNCATE ON audit_answered
        FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

      -- The same columns as before; an outcome is the row's own, else its outcome row's, else 200
      -- when a watermark of its writer covers it, else unknown (NULL).
      CREATE OR REPLACE VIEW audit_trail AS
        SELECT e.id, e.recorded_at, e.occurred_at, e.actor_sub, e.actor_role, e.action, e.resource_type,
               COALESCE(o.resource_id, e.resource_id) AS resource_id, e.patient_id, e.clinic,
               -- CASE, not AND: an older gateway's row (no writer) skips the lookup.
               COALESCE(e.outcome, o.outcome,
                 CASE WHEN e.writer IS NULL THEN NULL
                      WHEN e.seq <= (SELECT max(a.upto) FROM audit_answered a WHERE a.writer = e.writer)
                      THEN 200::smallint END) AS outcome,
               e.request_id, e.source, e.route
          FROM audit_events e LEFT JOIN audit_outcomes o ON o.event = e.event;
    `,
  },
];

const lockKey = 0x61756474; // "audt"

export function migrateAudit(pool: pg.Pool, log: Logger): Promise<number> {
  return runMigrations(pool, log, { name: "audit", lockKey, migrations: auditMigrations });
}
