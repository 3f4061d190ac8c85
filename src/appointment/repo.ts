// Owns every SQL statement of the appointment service. Each write is one transaction that also
// bumps the (clinic, date) slot-set version and writes its event to the outbox, so caches and
// consumers can never see a change the database does not have.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { AppError, type ErrorCode, isErrorCode } from "../shared/errors.ts";
import { type Position, positionTimeSql } from "../shared/keyset-page.ts";
import { inTransaction } from "../shared/pg.ts";
import { inventoryLimits } from "../shared/validation.ts";
import { requireTimeZone } from "./time.ts";

export type SlotState = "free" | "booked";
export type AppointmentState = "booked" | "cancelled";

export interface SlotView {
  id: string;
  clinicId: string;
  practitionerId: string;
  start: string;
  end: string;
  status: SlotState;
}

export interface AppointmentView {
  id: string;
  slotId: string;
  patientId: string;
  clinicId: string;
  /** The clinic's code: the key of its stock in the inventory (the medication service deducts there). */
  clinicCode: string;
  practitionerId: string;
  start: string;
  end: string;
  status: AppointmentState;
}

/** One (clinic, date) slot set, tagged with the version it was read at. */
export interface DaySlots {
  version: number;
  slots: SlotView[];
}

/** A committed change to a (clinic, date) slot set: what caches must invalidate. */
export interface SlotSetChange {
  clinicId: string;
  date: string;
  version: number;
}

export interface ClinicView {
  id: string;
  name: string;
  timeZone: string;
  /** Stable, unique, clinicCodePattern: what the inventory and its REST routes name the clinic by. */
  code: string;
}

/** A clinic to insert: without a code, the database makes one from its name (migration 3's trigger). */
export type NewClinic = Omit<ClinicView, "code"> & { code?: string };

/**
 * What a clinic's code may be: lower-case letters, digits and '-', starting with a letter or digit,
 * at most 64 characters. The same rule is the table's CHECK (migration 3); it lies inside what the
 * inventory accepts as a clinic (inventoryLimits.codePattern, codeMax), as
 * test/gateway.clinics.test.ts checks. Lower case only, so no two clinics differ by case alone.
 */
export const clinicCodePattern = /^[a-z0-9][a-z0-9-]{0,63}$/;
/** How often an insert picks the next free code again after a concurrent insert took the one it picked. */
const codeAttemptsMax = 5;

export interface PractitionerView {
  id: string;
  clinicId: string;
  name: string;
}

/** The most slots one CreateSlots call may create: bounds the transaction and the response. */
export const SLOTS_PER_REQUEST_MAX = 2_000;

const iso = (d: Date) => d.toISOString();
const pgCode = (err: unknown) => (err as { code?: string }).code;

async function bumpVersion(c: pg.PoolClient, clinicId: string, date: string): Promise<SlotSetChange> {
  const r = await c.query<{ version: string }>(
    `INSERT INTO slot_versions (clinic_id, local_date, version) VALUES ($1, $2, 1)
     ON CONFLICT (clinic_id, local_date) DO UPDATE SET version = slot_versions.version + 1
     RETURNING version`,
    [clinicId, date],
  );
  return { clinicId, date, version: Number(r.rows[0]!.version) };
}

type ClinicRow = { id: string; name: string; time_zone: string; code: string };
const toClinic = (x: ClinicRow): ClinicView => ({
  id: x.id,
  name: x.name,
  timeZone: x.time_zone,
  code: x.code,
});

export async function listClinics(pool: pg.Pool): Promise<ClinicView[]> {
  const r = await pool.query<ClinicRow>("SELECT id, name, time_zone, code FROM clinics ORDER BY name, id");
  return r.rows.map(toClinic);
}

export async function getClinic(pool: pg.Pool, id: string): Promise<ClinicView | undefined> {
  const r = await pool.query<ClinicRow>("SELECT id, name, time_zone, code FROM clinics WHERE id = $1", [id]);
  const x = r.rows[0];
  return x && toClinic(x);
}

/** A code a caller chose: the clinic rule, which also keeps it inside the inventory's. */
function requireClinicCode(code: string): string {
  if (
    !clinicCodePattern.test(code) ||
    !inventoryLimits.codePattern.test(code) ||
    code.length > inventoryLimits.codeMax
  ) {
    throw new AppError(
      "VALIDATION",
      "code must be 1-64 of [a-z0-9-], starting with a letter or digit",
      "code",
    );
  }
  return code;
}

/**
 * Inserts a clinic and returns it with its code. The zone is checked twice: as an IANA name here,
 * and by PostgreSQL, whose zones compute local dates. Without a code the database makes one from
 * the name (a trigger); two inserts racing for the same one meet at the unique index, and the loser
 * picks again.
 */
export async function insertClinic(pool: pg.Pool, c: NewClinic): Promise<ClinicView> {
  const timeZone = requireTimeZone(c.timeZone);
  const given = c.code === undefined ? null : requireClinicCode(c.code);
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await pool.query<{ code: string }>(
        `INSERT INTO clinics (id, name, time_zone, code)
         SELECT $1, $2, $3::text, $4::text FROM (SELECT now() AT TIME ZONE $3::text) AS known_zone
         RETURNING code`,
        [c.id, c.name, timeZone, given],
      );
      return { id: c.id, name: c.name, timeZone, code: r.rows[0]!.code };
    } catch (err) {
      if (pgCode(err) === "22023") throw new AppError("VALIDATION", "timeZone is not known", "timeZone");
      const taken =
        pgCode(err) === "23505" && (err as { constraint?: string }).constraint === "clinics_code_key";
      if (taken && given !== null) throw new AppError("VALIDATION", "code is another clinic's", "code");
      if (!taken || attempt >= codeAttemptsMax) throw err;
    }
  }
}

export async function insertPractitioner(pool: pg.Pool, p: PractitionerView): Promise<void> {
  await pool.query("INSERT INTO practitioners (id, clinic_id, name) VALUES ($1, $2, $3)", [
    p.id,
    p.clinicId,
    p.name,
  ]);
}

export async function listPractitioners(pool: pg.Pool, clinicId: string): Promise<PractitionerView[]> {
  const r = await pool.query<{ id: string; clinic_id: string; name: string }>(
    "SELECT id, clinic_id, name FROM practitioners WHERE clinic_id = $1 ORDER BY name, id",
    [clinicId],
  );
  return r.rows.map((x) => ({ id: x.id, clinicId: x.clinic_id, name: x.name }));
}

/**
 * One statement, so the version and the rows come from one snapshot: the version can only be
 * older than the rows if a write committed in between, which the next reader then sees as stale.
 */
export async function readDay(pool: pg.Pool, clinicId: string, date: string): Promise<DaySlots> {
  const r = await pool.query<{
    version: string | null;
    id: string | null;
    practitioner_id: string;
    starts_at: Date;
    ends_at: Date;
    booked: boolean;
  }>(
    `SELECT (SELECT version FROM slot_versions WHERE clinic_id = $1 AND local_date = $2) AS version,
            s.id, s.practitioner_id, s.starts_at, s.ends_at, (a.id IS NOT NULL) AS booked
       FROM (SELECT 1) AS one
       LEFT JOIN slots s ON s.clinic_id = $1 AND s.local_date = $2
       LEFT JOIN appointments a ON a.slot_id = s.id AND a.status = 'booked'
      ORDER BY s.starts_at, s.practitioner_id`,
    [clinicId, date],
  );
  const version = Number(r.rows[0]?.version ?? 0);
  const slots: SlotView[] = [];
  for (const x of r.rows) {
    if (x.id === null) continue;
    slots.push({
      id: x.id,
      clinicId,
      practitionerId: x.practitioner_id,
      start: iso(x.starts_at),
      end: iso(x.ends_at),
      status: x.booked ? "booked" : "free",
    });
  }
  return { version, slots };
}

export interface CreateSlotsInput {
  clinicId: string;
  practitionerId: string;
  start: Date;
  end: Date;
  minutes: number;
}

export async function createSlots(
  pool: pg.Pool,
  input: CreateSlotsInput,
): Promise<{ slots: SlotView[]; changes: SlotSetChange[] }> {
  const stepMs = input.minutes * 60_000;
  const starts: Date[] = [];
  for (let t = input.start.getTime(); t + stepMs <= input.end.getTime(); t += stepMs) {
    starts.push(new Date(t));
    if (starts.length > SLOTS_PER_REQUEST_MAX) {
      throw new AppError("VALIDATION", `at most ${SLOTS_PER_REQUEST_MAX} slots per request`, "end");
    }
  }
  if (starts.length === 0) throw new AppError("VALIDATION", "the range holds no whole slot", "end");
  return inTransaction(pool, async (c) => {
    const p = await c.query("SELECT 1 FROM practitioners WHERE id = $1 AND clinic_id = $2", [
      input.practitionerId,
      input.clinicId,
    ]);
    if (p.rowCount === 0) {
      const clinic = await c.query("SELECT 1 FROM clinics WHERE id = $1", [input.clinicId]);
      if (clinic.rowCount === 0) throw new AppError("CLINIC_NOT_FOUND", "no such clinic", "clinicId");
      throw new AppError("PRACTITIONER_NOT_FOUND", "no such practitioner in this clinic", "practitionerId");
    }
    let rows: { id: string; starts_at: Date; ends_at: Date; local_date: string }[];
    try {
      const r = await c.query<{ id: string; starts_at: Date; ends_at: Date; local_date: string }>(
        `INSERT INTO slots (id, clinic_id, practitioner_id, starts_at, ends_at, local_date)
         SELECT u.id, $1, $2, u.s, u.e, (u.s AT TIME ZONE c.time_zone)::date
           FROM unnest($3::uuid[], $4::timestamptz[], $5::timestamptz[]) AS u(id, s, e)
           JOIN clinics c ON c.id = $1
         RETURNING id, starts_at, ends_at, local_date::text AS local_date`,
        [
          input.clinicId,
          input.practitionerId,
          starts.map(() => randomUUID()),
          starts.map(iso),
          starts.map((s) => iso(new Date(s.getTime() + stepMs))),
        ],
      );
      rows = r.rows;
    } catch (err) {
      if (pgCode(err) === "23P01")
        throw new AppError("SLOT_OVERLAP", "slots overlap the practitioner's slots", "start");
      throw err;
    }
    const dates = [...new Set(rows.map((r) => r.local_date))].sort();
    const changes: SlotSetChange[] = [];
    for (const d of dates) changes.push(await bumpVersion(c, input.clinicId, d));
    rows.sort((a, b) => a.starts_at.getTime() - b.starts_at.getTime());
    return {
      slots: rows.map((r) => ({
        id: r.id,
        clinicId: input.clinicId,
        practitionerId: input.practitionerId,
        start: iso(r.starts_at),
        end: iso(r.ends_at),
        status: "free" as const,
      })),
      changes,
    };
  });
}

const appointmentColumns = `a.id, a.slot_id, a.patient_id, a.status, s.clinic_id, c.code AS clinic_code,
         s.practitioner_id, s.starts_at, s.ends_at, s.local_date::text AS local_date`;
const appointmentFrom =
  "appointments a JOIN slots s ON s.id = a.slot_id JOIN clinics c ON c.id = s.clinic_id";
const appointmentSelect = `SELECT ${appointmentColumns} FROM ${appointmentFrom}`;

interface AppointmentRow {
  id: string;
  slot_id: string;
  patient_id: string;
  status: AppointmentState;
  clinic_id: string;
  clinic_code: string;
  practitioner_id: string;
  starts_at: Date;
  ends_at: Date;
  local_date: string;
}

function toAppointment(r: AppointmentRow): AppointmentView {
  return {
    id: r.id,
    slotId: r.slot_id,
    patientId: r.patient_id,
    clinicId: r.clinic_id,
    clinicCode: r.clinic_code,
    practitionerId: r.practitioner_id,
    start: iso(r.starts_at),
    end: iso(r.ends_at),
    status: r.status,
  };
}

export async function getAppointment(pool: pg.Pool | pg.PoolClient, id: string): Promise<AppointmentView> {
  const r = await pool.query<AppointmentRow>(`${appointmentSelect} WHERE a.id = $1`, [id]);
  const row = r.rows[0];
  if (!row) throw new AppError("APPOINTMENT_NOT_FOUND", "no such appointment", "id");
  return toAppointment(row);
}

/** Which of a patient's appointments one page reads. */
export interface PatientAppointmentsQuery {
  patientId: string;
  /** Rows to read: the page size plus one, so the caller learns whether there is a next page. */
  rowsMax: number;
  /** Strictly older than this position (slot start, then id), newest first. */
  after?: Position;
  status?: AppointmentState;
  /** Present: only appointments at a clinic named here, by id or by code (none when both are empty). */
  scope?: { clinicIds: string[]; clinicCodes: string[] };
}

/**
 * A patient's appointments, newest first by their slot's start, ties by id (keyset pagination:
 * each page starts strictly after the last row of the one before, so a booking made meanwhile
 * neither repeats nor skips a row). Each row carries its position for the next page's token.
 */
export async function listPatientAppointments(
  pool: pg.Pool,
  q: PatientAppointmentsQuery,
): Promise<(AppointmentView & { position: Position })[]> {
  const r = await pool.query<AppointmentRow & { position_at: string }>(
    `SELECT ${appointmentColumns}, ${positionTimeSql("s.starts_at")} AS position_at
       FROM ${appointmentFrom}
      WHERE a.patient_id = $1
        AND ($2::text IS NULL OR a.status = $2)
        AND ($3::boolean IS FALSE OR s.clinic_id = ANY($4::uuid[]) OR c.code = ANY($5::text[]))
        AND ($6::timestamptz IS NULL OR (s.starts_at, a.id) < ($6::timestamptz, $7::uuid))
      ORDER BY s.starts_at DESC, a.id DESC
      LIMIT $8`,
    [
      q.patientId,
      q.status ?? null,
      q.scope !== undefined,
      q.scope?.clinicIds ?? [],
      q.scope?.clinicCodes ?? [],
      q.after?.at ?? null,
      q.after?.id ?? null,
      q.rowsMax,
    ],
  );
  return r.rows.map((row) => ({
    ...toAppointment(row),
    position: { at: row.position_at, id: row.id },
  }));
}

export interface BookInput {
  slotId: string;
  patientId: string;
  idempotencyKey: string;
  /** A clinician's booking: the slot's clinic must be one of these (ids or codes). Undefined: any. */
  clinicsAllowed?: { ids: readonly string[]; codes: readonly string[] };
}

export interface BookResult {
  appointment: AppointmentView;
  replayed: boolean;
  change: SlotSetChange;
}

/**
 * Books a slot. The partial unique index decides who wins a race; the idempotency row is inserted
 * first, so a concurrent retry with the same key blocks on it and then reads the first outcome.
 */
export async function book(pool: pg.Pool, input: BookInput): Promise<BookResult> {
  const requestHash = `${input.slotId}|${input.patientId}`;
  // Checked before the key is claimed, so a refused caller leaves nothing behind; a slot's clinic
  // never changes, so the check cannot go stale before the booking.
  if (input.clinicsAllowed) {
    const r = await pool.query<{ clinic_id: string; code: string }>(
      "SELECT s.clinic_id, c.code FROM slots s JOIN clinics c ON c.id = s.clinic_id WHERE s.id = $1",
      [input.slotId],
    );
    const row = r.rows[0];
    const { ids, codes } = input.clinicsAllowed;
    if (row !== undefined && !ids.includes(row.clinic_id) && !codes.includes(row.code))
      throw new AppError("FORBIDDEN", "the token is not scoped to the slot's clinic", "slotId");
  }
  // A failed booking still commits when it carries a key: the key's first outcome is the error.
  const outcome = await inTransaction<Outcome>(pool, async (c) => {
    if (input.idempotencyKey !== "") {
      const claimed = await c.query(
        "INSERT INTO booking_idempotency (key, request_hash) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING key",
        [input.idempotencyKey, requestHash],
      );
      if (claimed.rowCount === 0) return replay(c, input.idempotencyKey, requestHash);
    }
    const result = await bookSlot(c, input);
    if (input.idempotencyKey !== "") {
      await c.query("UPDATE booking_idempotency SET appointment_id = $2, error_code = $3 WHERE key = $1", [
        input.idempotencyKey,
        "ok" in result ? result.ok.appointment.id : null,
        "error" in result ? result.error.code : null,
      ]);
    }
    return result;
  });
  if ("error" in outcome) throw outcome.error;
  return outcome.ok;
}

type Outcome = { ok: BookResult } | { error: AppError };

/** A key's first outcome that was about its slot: the replay names the field again. */
const slotErrors = new Set<ErrorCode>(["SLOT_NOT_FOUND", "SLOT_TAKEN", "SLOT_IN_PAST"]);

async function replay(c: pg.PoolClient, key: string, requestHash: string): Promise<Outcome> {
  const r = await c.query<{ request_hash: string; appointment_id: string | null; error_code: string | null }>(
    "SELECT request_hash, appointment_id, error_code FROM booking_idempotency WHERE key = $1",
    [key],
  );
  const row = r.rows[0];
  // Pruned between the claim and this read: the key just passed its window. Retryable: the retry
  // claims the key afresh.
  if (!row) throw new AppError("UNAVAILABLE", "this Idempotency-Key expired meanwhile; retry");
  if (row.request_hash !== requestHash) {
    const msg = "this Idempotency-Key was used with another request";
    return { error: new AppError("IDEMPOTENCY_KEY_REUSED", msg, "idempotencyKey") };
  }
  if (row.appointment_id) {
    const appointment = await getAppointment(c, row.appointment_id);
    return { ok: { appointment, replayed: true, change: await currentVersion(c, appointment.slotId) } };
  }
  const code: ErrorCode = row.error_code && isErrorCode(row.error_code) ? row.error_code : "INTERNAL";
  const msg = "the first request with this Idempotency-Key failed the same way";
  return {
    error: new AppError(code, msg, slotErrors.has(code) ? "slotId" : undefined),
  };
}

/**
 * The slot set's version as it is now. A replay raises the caches to it before acknowledging: the
 * first attempt may have died between its commit and its cache invalidation.
 */
async function currentVersion(c: pg.PoolClient, slotId: string): Promise<SlotSetChange> {
  const r = await c.query<{ clinic_id: string; local_date: string; version: string | null }>(
    `SELECT s.clinic_id, s.local_date::text AS local_date, v.version
       FROM slots s LEFT JOIN slot_versions v ON v.clinic_id = s.clinic_id AND v.local_date = s.local_date
      WHERE s.id = $1`,
    [slotId],
  );
  const row = r.rows[0]!;
  return { clinicId: row.clinic_id, date: row.local_date, version: Number(row.version ?? 0) };
}

/**
 * An appointment event carries what its consumers need to tell the patient (clinic, its zone, the
 * slot's times), so the notification service never reads this database; it names one patient only.
 */
async function eventPayload(c: pg.PoolClient, a: AppointmentView): Promise<Record<string, string>> {
  const r = await c.query<{ name: string; time_zone: string }>(
    "SELECT name, time_zone FROM clinics WHERE id = $1",
    [a.clinicId],
  );
  const clinic = r.rows[0]!;
  return {
    appointmentId: a.id,
    slotId: a.slotId,
    clinicId: a.clinicId,
    clinicCode: a.clinicCode,
    patientId: a.patientId,
    start: a.start,
    end: a.end,
    clinicName: clinic.name,
    timeZone: clinic.time_zone,
  };
}

async function bookSlot(
  c: pg.PoolClient,
  input: BookInput,
): Promise<{ ok: BookResult } | { error: AppError }> {
  const slot = await c.query<{ clinic_id: string; local_date: string; started: boolean }>(
    "SELECT clinic_id, local_date::text AS local_date, starts_at <= now() AS started FROM slots WHERE id = $1",
    [input.slotId],
  );
  const s = slot.rows[0];
  if (!s) return { error: new AppError("SLOT_NOT_FOUND", "no such slot", "slotId") };
  if (s.started) return { error: new AppError("SLOT_IN_PAST", "the slot has already started", "slotId") };
  const id = randomUUID();
  await c.query("SAVEPOINT book");
  try {
    await c.query(
      "INSERT INTO appointments (id, slot_id, patient_id, status) VALUES ($1, $2, $3, 'booked')",
      [id, input.slotId, input.patientId],
    );
  } catch (err) {
    if (pgCode(err) !== "23505") throw err;
    await c.query("ROLLBACK TO SAVEPOINT book");
    return { error: new AppError("SLOT_TAKEN", "the slot is already booked", "slotId") };
  }
  const change = await bumpVersion(c, s.clinic_id, s.local_date);
  const appointment = await getAppointment(c, id);
  await c.query("INSERT INTO outbox (topic, payload) VALUES ('appointment.booked', $1)", [
    await eventPayload(c, appointment),
  ]);
  return { ok: { appointment, replayed: false, change } };
}

export async function cancel(
  pool: pg.Pool,
  id: string,
): Promise<{ appointment: AppointmentView; change: SlotSetChange }> {
  return inTransaction(pool, async (c) => {
    const r = await c.query<{ slot_id: string }>(
      "UPDATE appointments SET status = 'cancelled', cancelled_at = now() WHERE id = $1 AND status = 'booked' RETURNING slot_id",
      [id],
    );
    if (r.rowCount === 0) {
      const existing = await getAppointment(c, id); // throws APPOINTMENT_NOT_FOUND
      if (existing.status === "cancelled") {
        throw new AppError("ALREADY_CANCELLED", "the appointment is already cancelled", "id");
      }
      throw new AppError("INTERNAL", "cancel matched no row for a booked appointment");
    }
    const appointment = await getAppointment(c, id);
    const s = await c.query<{ local_date: string }>(
      "SELECT local_date::text AS local_date FROM slots WHERE id = $1",
      [appointment.slotId],
    );
    const change = await bumpVersion(c, appointment.clinicId, s.rows[0]!.local_date);
    await c.query("INSERT INTO outbox (topic, payload) VALUES ('appointment.cancelled', $1)", [
      await eventPayload(c, appointment),
    ]);
    return { appointment, change };
  });
}
