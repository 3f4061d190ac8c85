// Owns the audit database's schema (medisync_audit, the gateway's own) as versioned migrations and
// runs them under the audit's advisory lock key: one append-only table of FHIR AuditEvent-shaped
// rows, which the database itself refuses to update, delete or truncate.
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
];

const lockKey = 0x61756474; // "audt"

export function migrateAudit(pool: pg.Pool, log: Logger): Promise<number> {
  return runMigrations(pool, log, { name: "audit", lockKey, migrations: auditMigrations });
}
