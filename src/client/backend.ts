// Owns the seam between the scenarios and the wire: what a scenario can ask of MediSync, answered
// the same way over REST (through the gateway) and over gRPC (straight to the services).
import type { Patient } from "./identity.ts";
import type { Outcome } from "./stats.ts";

export interface ClinicInfo {
  id: string;
  /** The code stock and staff tokens name it by. */
  code: string;
  timeZone: string;
}

export interface SlotInfo {
  id: string;
  free: boolean;
  /** RFC 3339 start. */
  start: string;
}

/** A stock line as the scenarios need it: the units that can still be handed out. */
export interface StockInfo {
  medicationCode: string;
  /** Units in lots that have not expired (a deduct takes no expired lot). */
  usable: number;
}

/** Structured dosage (FHIR Dosage), as the prescription routes take it. */
export interface Dosage {
  amount: number;
  unit: string;
  timesPerDay: number;
  days: number;
}

/** What a prescription names: the appointment, and the clinic (its code) whose stock it comes from. */
export interface PrescriptionOrder {
  appointmentId: string;
  clinicCode: string;
  medicationCode: string;
  quantity: number;
  dosage: Dosage;
}

/** One request's outcome, and what it returned when it succeeded. */
export interface Answer<T> {
  outcome: Outcome;
  value?: T;
}

export interface Backend {
  /** Human name of what is driven, for messages: "gateway http://…" or "appointment 127.0.0.1:50051". */
  readonly describe: string;
  /** Answers when the appointment side is up; throws TargetDownError with one clear line if not. */
  probeAppointments(): Promise<void>;
  /** Same for the inventory side, reading the stock of `clinicCode`. */
  probeInventory(clinicCode: string): Promise<void>;
  /** Same for the medication service (the prescribe scenario). */
  probeMedication(): Promise<void>;
  listClinics(): Promise<Answer<ClinicInfo[]>>;
  /** A clinic's stock lines (read as the prescriber of that clinic), before the run. */
  listStock(clinicCode: string): Promise<Answer<StockInfo[]>>;
  /** The scenarios of a patient carry the patient they act for (over REST: their token). */
  listSlots(clinicId: string, date: string, by: Patient): Promise<Answer<SlotInfo[]>>;
  book(slotId: string, by: Patient, idempotencyKey: string): Promise<Answer<{ id: string }>>;
  cancel(appointmentId: string, by: Patient): Promise<Answer<void>>;
  /** As a clinician of the order's clinic; the medication service deducts the stock. */
  prescribe(order: PrescriptionOrder, idempotencyKey: string): Promise<Answer<{ id: string }>>;
  restock(clinicId: string, medicationCode: string, quantity: number, key: string): Promise<Answer<void>>;
  deduct(clinicId: string, medicationCode: string, quantity: number, key: string): Promise<Answer<void>>;
  transfer(
    fromClinicId: string,
    toClinicId: string,
    medicationCode: string,
    quantity: number,
    key: string,
  ): Promise<Answer<void>>;
  close(): Promise<void>;
}

/**
 * The units of a stock line that are surely usable now: a lot is usable through its expiry date in
 * the clinic's zone, which is never later than tomorrow in UTC, so a lot expiring after today (UTC)
 * counts and one expiring sooner does not. A lot with no expiry always counts; a line without lots
 * is its quantity.
 */
export function usableUnits(
  line: { quantity: number; lots: readonly { quantity: number; expiresOn?: string | null }[] },
  now = Date.now(),
): number {
  if (line.lots.length === 0) return line.quantity;
  const todayUtc = new Date(now).toISOString().slice(0, 10);
  return line.lots.reduce((n, l) => (!l.expiresOn || l.expiresOn > todayUtc ? n + l.quantity : n), 0);
}
