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
  listClinics(): Promise<Answer<ClinicInfo[]>>;
  /** The scenarios of a patient carry the patient they act for (over REST: their token). */
  listSlots(clinicId: string, date: string, by: Patient): Promise<Answer<SlotInfo[]>>;
  book(slotId: string, by: Patient, idempotencyKey: string): Promise<Answer<{ id: string }>>;
  cancel(appointmentId: string, by: Patient): Promise<Answer<void>>;
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
