// Owns the seam between the scenarios and the wire: what a scenario can ask of MediSync, answered
// the same way over REST (through the gateway) and over gRPC (straight to the services).
import type { Outcome } from "./stats.ts";

export interface ClinicInfo {
  id: string;
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
  /** Same for the inventory side. */
  probeInventory(): Promise<void>;
  listClinics(): Promise<Answer<ClinicInfo[]>>;
  listSlots(clinicId: string, date: string): Promise<Answer<SlotInfo[]>>;
  book(slotId: string, patientId: string, idempotencyKey: string): Promise<Answer<{ id: string }>>;
  cancel(appointmentId: string): Promise<Answer<void>>;
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
