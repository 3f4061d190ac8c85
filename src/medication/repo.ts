// Owns the medication database access: prescriptions with their dispense, read as one row; the
// state changes of the saga, each one guarded by the state it leaves (`WHERE status = …`), so two
// writers that race on the same dispense (the request and the recovery loop) change it once; and the
// outbox rows written in the same transaction as the change they announce.
import type pg from "pg";
import type { Dispense, DispensedLot, Dosage, Prescription } from "../gen/medisync/v1/medication.ts";

type Db = pg.Pool | pg.PoolClient;

export interface PrescriptionRow {
  id: string;
  idempotencyKey: string;
  requestHash: string;
  appointmentId: string;
  clinic: string;
  clinicId: string;
  patientId: string;
  medicationCode: string;
  quantity: number;
  dosage: Dosage;
  status: string;
  statusReason: string;
  createdAt: Date;
  dispense: {
    id: string;
    status: string;
    statusReason: string;
    lots: DispensedLot[];
    inventoryIndex: number;
    returnStatus: string;
    createdAt: Date;
    returnStartedAt: Date | undefined;
  };
}

const select = `
  SELECT p.id, p.idempotency_key, p.request_hash, p.appointment_id, p.clinic, p.clinic_id, p.patient_id,
         p.medication_code, p.quantity, p.dosage, p.status, p.status_reason, p.created_at,
         d.id AS d_id, d.status AS d_status, d.status_reason AS d_status_reason, d.lots AS d_lots,
         d.inventory_index AS d_inventory_index, d.return_status AS d_return_status,
         d.created_at AS d_created_at, d.return_started_at AS d_return_started_at
    FROM prescriptions p JOIN dispenses d ON d.prescription_id = p.id`;

interface Raw {
  id: string;
  idempotency_key: string;
  request_hash: string;
  appointment_id: string;
  clinic: string;
  clinic_id: string;
  patient_id: string;
  medication_code: string;
  quantity: string;
  dosage: Dosage;
  status: string;
  status_reason: string | null;
  created_at: Date;
  d_id: string;
  d_status: string;
  d_status_reason: string | null;
  d_lots: DispensedLot[];
  d_inventory_index: string;
  d_return_status: string;
  d_created_at: Date;
  d_return_started_at: Date | null;
}

function toRow(r: Raw): PrescriptionRow {
  return {
    id: r.id,
    idempotencyKey: r.idempotency_key,
    requestHash: r.request_hash,
    appointmentId: r.appointment_id,
    clinic: r.clinic,
    clinicId: r.clinic_id,
    patientId: r.patient_id,
    medicationCode: r.medication_code,
    quantity: Number(r.quantity),
    dosage: r.dosage,
    status: r.status,
    statusReason: r.status_reason ?? "",
    createdAt: r.created_at,
    dispense: {
      id: r.d_id,
      status: r.d_status,
      statusReason: r.d_status_reason ?? "",
      lots: r.d_lots,
      inventoryIndex: Number(r.d_inventory_index),
      returnStatus: r.d_return_status,
      createdAt: r.d_created_at,
      returnStartedAt: r.d_return_started_at ?? undefined,
    },
  };
}

export function toMessage(row: PrescriptionRow): Prescription {
  const dispense: Dispense = {
    id: row.dispense.id,
    status: row.dispense.status,
    lots: row.dispense.lots,
    inventoryIndex: row.dispense.inventoryIndex,
    statusReason: row.dispense.statusReason,
    returnStatus: row.dispense.returnStatus,
  };
  return {
    id: row.id,
    appointmentId: row.appointmentId,
    clinic: row.clinic,
    patientId: row.patientId,
    medicationCode: row.medicationCode,
    quantity: row.quantity,
    dosage: row.dosage,
    status: row.status,
    statusReason: row.statusReason,
    createdAt: row.createdAt.toISOString(),
    dispense,
  };
}

export async function byId(db: Db, id: string): Promise<PrescriptionRow | undefined> {
  const r = await db.query<Raw>(`${select} WHERE p.id = $1`, [id]);
  return r.rows[0] ? toRow(r.rows[0]) : undefined;
}

export async function byKey(db: Db, key: string): Promise<PrescriptionRow | undefined> {
  const r = await db.query<Raw>(`${select} WHERE p.idempotency_key = $1`, [key]);
  return r.rows[0] ? toRow(r.rows[0]) : undefined;
}

/** One page of an appointment's prescriptions, oldest first, after the (createdAt, id) cursor. */
export async function pageOf(
  db: Db,
  appointmentId: string,
  limit: number,
  after: { createdAt: string; id: string } | undefined,
): Promise<PrescriptionRow[]> {
  const r = after
    ? await db.query<Raw>(
        `${select} WHERE p.appointment_id = $1 AND (p.created_at, p.id) > ($2::timestamptz, $3::uuid)
          ORDER BY p.created_at, p.id LIMIT $4`,
        [appointmentId, after.createdAt, after.id, limit],
      )
    : await db.query<Raw>(`${select} WHERE p.appointment_id = $1 ORDER BY p.created_at, p.id LIMIT $2`, [
        appointmentId,
        limit,
      ]);
  return r.rows.map(toRow);
}

export interface NewPrescription {
  id: string;
  dispenseId: string;
  idempotencyKey: string;
  requestHash: string;
  appointmentId: string;
  clinic: string;
  clinicId: string;
  patientId: string;
  medicationCode: string;
  quantity: number;
  dosage: Dosage;
}

/**
 * Serializes, per appointment, a prescription's insert with the handling of the appointment's
 * cancel: without it each could commit without seeing the other (read committed), leaving an
 * active prescription on a cancelled appointment.
 */
async function lockAppointment(c: pg.PoolClient, appointmentId: string): Promise<void> {
  await c.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7169380))", [appointmentId]);
}

/** Marks an appointment cancelled (idempotent), under its lock; the caller's transaction commits it. */
export async function markAppointmentCancelled(c: pg.PoolClient, appointmentId: string): Promise<void> {
  await lockAppointment(c, appointmentId);
  await c.query(
    "INSERT INTO cancelled_appointments (appointment_id) VALUES ($1) ON CONFLICT (appointment_id) DO NOTHING",
    [appointmentId],
  );
}

/** Markers older than this are pruned: the appointment service itself says cancelled by then. */
export async function pruneCancelledAppointments(pool: pg.Pool, olderThanSeconds: number): Promise<void> {
  await pool.query(
    "DELETE FROM cancelled_appointments WHERE cancelled_at < now() - make_interval(secs => $1)",
    [olderThanSeconds],
  );
}

/**
 * Records the prescription (active) and its dispense (in-progress) in one transaction, before
 * inventory is asked. False when the idempotency key is already taken (a racing twin won);
 * "cancelled" when the appointment's cancel was handled first.
 */
export async function insertIssued(c: pg.PoolClient, p: NewPrescription): Promise<boolean | "cancelled"> {
  await lockAppointment(c, p.appointmentId);
  const cancelled = await c.query("SELECT 1 FROM cancelled_appointments WHERE appointment_id = $1", [
    p.appointmentId,
  ]);
  if ((cancelled.rowCount ?? 0) > 0) return "cancelled";
  const r = await c.query(
    `INSERT INTO prescriptions (id, idempotency_key, request_hash, appointment_id, clinic, clinic_id,
                                patient_id, medication_code, quantity, dosage, status)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active')
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
    [
      p.id,
      p.idempotencyKey,
      p.requestHash,
      p.appointmentId,
      p.clinic,
      p.clinicId,
      p.patientId,
      p.medicationCode,
      p.quantity,
      JSON.stringify(p.dosage),
    ],
  );
  if (r.rowCount === 0) return false;
  await c.query(`INSERT INTO dispenses (id, prescription_id, status) VALUES ($1, $2, 'in-progress')`, [
    p.dispenseId,
    p.id,
  ]);
  return true;
}

/** What the outbox says of a prescription: ids and codes, no names or free text. */
export function eventOf(row: PrescriptionRow, status: string): Record<string, unknown> {
  return {
    prescriptionId: row.id,
    appointmentId: row.appointmentId,
    patientId: row.patientId,
    clinic: row.clinic,
    clinicId: row.clinicId,
    medicationCode: row.medicationCode,
    quantity: row.quantity,
    status,
  };
}

export async function addEvent(c: pg.PoolClient, topic: string, payload: Record<string, unknown>) {
  await c.query("INSERT INTO outbox (topic, payload) VALUES ($1, $2)", [topic, JSON.stringify(payload)]);
}

/** in-progress → completed with the lots taken; the prescription is then completed. */
export async function completeDispense(
  c: pg.PoolClient,
  row: PrescriptionRow,
  lots: DispensedLot[],
  inventoryIndex: number,
): Promise<boolean> {
  const r = await c.query(
    `UPDATE dispenses SET status = 'completed', lots = $2, inventory_index = $3, updated_at = now()
      WHERE id = $1 AND status = 'in-progress'`,
    [row.dispense.id, JSON.stringify(lots), inventoryIndex],
  );
  if (r.rowCount === 0) return false;
  await c.query(
    "UPDATE prescriptions SET status = 'completed', updated_at = now() WHERE id = $1 AND status = 'active'",
    [row.id],
  );
  await addEvent(c, "prescription.issued", eventOf(row, "completed"));
  return true;
}

/** in-progress → declined (not enough stock); the prescription is stopped and stays on record. */
export async function declineDispense(
  c: pg.PoolClient,
  row: PrescriptionRow,
  reason: string,
): Promise<boolean> {
  const r = await c.query(
    `UPDATE dispenses SET status = 'declined', status_reason = $2, updated_at = now()
      WHERE id = $1 AND status = 'in-progress'`,
    [row.dispense.id, reason],
  );
  if (r.rowCount === 0) return false;
  await c.query(
    `UPDATE prescriptions SET status = 'stopped', status_reason = $2, updated_at = now()
      WHERE id = $1 AND status = 'active'`,
    [row.id, reason],
  );
  await addEvent(c, "prescription.declined", eventOf(row, "stopped"));
  return true;
}

/** in-progress → reconcile: it could not be settled safely; a person must look. */
export async function markReconcile(db: Db, dispenseId: string, reason: string): Promise<boolean> {
  const r = await db.query(
    `UPDATE dispenses SET status = 'reconcile', status_reason = $2, updated_at = now()
      WHERE id = $1 AND status = 'in-progress'`,
    [dispenseId, reason],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Cancels the prescription unless it already is; a completed dispense's lots are then due back
 * (return_status in-progress). False when it was cancelled already (by a racing cancel).
 */
export async function cancelPrescription(c: pg.PoolClient, row: PrescriptionRow): Promise<boolean> {
  const r = await c.query(
    `UPDATE prescriptions SET status = 'cancelled', status_reason = 'cancelled', updated_at = now()
      WHERE id = $1 AND status <> 'cancelled'`,
    [row.id],
  );
  if (r.rowCount === 0) return false;
  await c.query(
    `UPDATE dispenses SET return_status = 'in-progress', return_started_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'completed' AND return_status = 'none'`,
    [row.dispense.id],
  );
  await addEvent(c, "prescription.cancelled", eventOf(row, "cancelled"));
  return true;
}

export async function markReturned(db: Db, dispenseId: string, status: "returned" | "reconcile") {
  await db.query(
    `UPDATE dispenses SET return_status = $2, updated_at = now() WHERE id = $1 AND return_status = 'in-progress'`,
    [dispenseId, status],
  );
}

/**
 * Dispenses (or returns) left in-progress longer than `olderThanMs`: a request that died, or an
 * inventory that did not answer. Claimed by bumping updated_at under SKIP LOCKED, so instances
 * share the work and one dispense is retried by one of them at a time.
 */
export async function claimStale(
  pool: pg.Pool,
  what: "dispense" | "return",
  olderThanMs: number,
  limit: number,
): Promise<PrescriptionRow[]> {
  const where = what === "dispense" ? "status = 'in-progress'" : "return_status = 'in-progress'";
  const claimed = await pool.query<{ prescription_id: string }>(
    `UPDATE dispenses SET attempts = attempts + 1, updated_at = now()
      WHERE id IN (SELECT id FROM dispenses
                    WHERE ${where} AND updated_at < now() - make_interval(secs => $1)
                    ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
      RETURNING prescription_id`,
    [olderThanMs / 1000, limit],
  );
  if (claimed.rowCount === 0) return [];
  const r = await pool.query<Raw>(`${select} WHERE p.id = ANY($1::uuid[])`, [
    claimed.rows.map((x) => x.prescription_id),
  ]);
  return r.rows.map(toRow);
}

/** Dispenses waiting for a person, for /metrics. */
export async function reconcileCount(pool: pg.Pool): Promise<number> {
  const r = await pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM dispenses WHERE status = 'reconcile' OR return_status = 'reconcile'",
  );
  return r.rows[0]!.n;
}
