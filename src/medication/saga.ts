// Owns the prescription saga: record first, then ask inventory, then record the answer — and the
// recovery that finishes whatever a crash left in between. Exactly once rests on two things: the
// inventory request id is derived from the dispense id (so every retry of one dispense is the same
// write to inventory, which applies it once), and a dispense is retried only while inventory still
// remembers that id (MEDICATION_RETRY_WINDOW_MS below INVENTORY_IDEMPOTENCY_WINDOW_MS); past that it
// waits for a person (reconcile), never retried blindly. Every state change is guarded by the state
// it leaves (repo.ts), so the request and the recovery loop racing on one dispense change it once.
import { createHash, randomUUID } from "node:crypto";
import type pg from "pg";
import type { Logger } from "pino";
import type { DispensedLot, Dosage } from "../gen/medisync/v1/medication.ts";
import { AppError } from "../shared/errors.ts";
import { type CrashpointName, crashpoint } from "../shared/failpoints.ts";
import type { InventoryClient, WriteResult } from "../shared/inventory-client.ts";
import { counter } from "../shared/metrics.ts";
import { inTransaction } from "../shared/pg.ts";
import { isRetryable } from "../shared/retry.ts";
import { inventoryLimits } from "../shared/validation.ts";
import {
  byId,
  byKey,
  cancelPrescription,
  completeDispense,
  declineDispense,
  insertIssued,
  markAppointmentCancelled,
  markReconcile,
  markReturned,
  type PrescriptionRow,
  pageOf,
} from "./repo.ts";

/** Prescriptions read per page when cancelling all of an appointment's. */
const appointmentPageRows = 100;

/** What the saga needs to know of an appointment (asked of the appointment service). */
export interface AppointmentFacts {
  booked: boolean;
  /** The clinic's code: the stock the medicine comes from. */
  clinic: string;
  clinicId: string;
  patientId: string;
}

export interface SagaDeps {
  pool: pg.Pool;
  inventory: Pick<InventoryClient, "write">;
  appointment: (id: string, requestId: string) => Promise<AppointmentFacts>;
  retryWindowMs: number;
  crashpoints: ReadonlySet<CrashpointName>;
  log: Logger;
  now?: () => number;
}

export interface IssueInput {
  appointmentId: string;
  medicationCode: string;
  quantity: number;
  dosage: Dosage;
  idempotencyKey: string;
}

const settled = counter("medisync_medication_dispenses_settled_total", "dispenses settled, by outcome", [
  "outcome",
]);
const reconciles = counter(
  "medisync_medication_reconcile_total",
  "dispenses or returns that could not be settled within the retry window (a person must look)",
  ["what"],
);

/** The inventory request ids of one dispense: the same for every retry of it. */
export const deductRequestId = (dispenseId: string) => `dispense:${dispenseId}`;
/** A return of more lots than one ReturnStock takes goes in parts, each its own id. */
export const returnRequestId = (dispenseId: string, part: number) =>
  part === 0 ? `return:${dispenseId}` : `return:${dispenseId}:${part}`;

/** What makes two requests with one idempotency key the same request. */
export function requestHash(i: Omit<IssueInput, "idempotencyKey">): string {
  const d = i.dosage;
  const canon = JSON.stringify([
    i.appointmentId,
    i.medicationCode,
    i.quantity,
    d.amount,
    d.unit,
    d.timesPerDay,
    d.days,
  ]);
  return createHash("sha256").update(canon).digest("hex");
}

export class Saga {
  private readonly now: () => number;

  constructor(private readonly d: SagaDeps) {
    this.now = d.now ?? Date.now;
  }

  /**
   * Issues a prescription, or answers the first result of its idempotency key. Throws
   * INSUFFICIENT_STOCK (meta prescriptionid) when the dispense was declined, DISPENSE_UNSETTLED when
   * inventory did not answer (the recovery loop finishes it; a retry with the key reads the result).
   */
  async issue(input: IssueInput, requestId: string): Promise<{ row: PrescriptionRow; replayed: boolean }> {
    const hash = requestHash(input);
    const earlier = await byKey(this.d.pool, input.idempotencyKey);
    if (earlier) return this.replay(earlier, hash, requestId);
    const appt = await this.d.appointment(input.appointmentId, requestId);
    if (!appt.booked) {
      throw new AppError("APPOINTMENT_NOT_BOOKED", "the appointment is cancelled", "appointmentId");
    }
    const id = randomUUID();
    const inserted = await inTransaction(this.d.pool, (c) =>
      insertIssued(c, {
        id,
        dispenseId: randomUUID(),
        idempotencyKey: input.idempotencyKey,
        requestHash: hash,
        appointmentId: input.appointmentId,
        clinic: appt.clinic,
        clinicId: appt.clinicId,
        patientId: appt.patientId,
        medicationCode: input.medicationCode,
        quantity: input.quantity,
        dosage: input.dosage,
      }),
    );
    if (inserted === "cancelled") {
      throw new AppError("APPOINTMENT_NOT_BOOKED", "the appointment is cancelled", "appointmentId");
    }
    if (!inserted) {
      // A request with the same key committed first: it is the prescription.
      const twin = await byKey(this.d.pool, input.idempotencyKey);
      if (!twin) throw new Error("invariant: an idempotency key conflicted but names no prescription");
      return this.replay(twin, hash, requestId);
    }
    crashpoint(this.d.crashpoints, "medication-after-record");
    const row = await byId(this.d.pool, id);
    if (!row) throw new Error("invariant: a prescription just committed is gone");
    return { row: this.outcome(await this.settle(row, requestId)), replayed: false };
  }

  private async replay(row: PrescriptionRow, hash: string, requestId: string) {
    if (row.requestHash !== hash) {
      throw new AppError(
        "IDEMPOTENCY_KEY_REUSED",
        "this Idempotency-Key was used for a different prescription",
        "Idempotency-Key",
      );
    }
    const now = row.dispense.status === "in-progress" ? await this.settle(row, requestId) : row;
    return { row: this.outcome(now), replayed: true };
  }

  /** The answer a settled (or not) prescription gives its caller. */
  private outcome(row: PrescriptionRow): PrescriptionRow {
    switch (row.dispense.status) {
      case "declined":
        throw new AppError(
          "INSUFFICIENT_STOCK",
          "not enough stock; the prescription is on record, stopped",
          "quantity",
          {
            prescriptionid: row.id,
          },
        );
      case "in-progress":
        throw new AppError(
          "DISPENSE_UNSETTLED",
          "inventory did not answer yet; the dispense will be finished, retry with the same Idempotency-Key",
          undefined,
          { "retry-after": "2", prescriptionid: row.id },
        );
      default:
        return row;
    }
  }

  /**
   * Asks inventory to deduct for an in-progress dispense (again: the same request id) and records
   * the answer. Returns the row as it is afterwards; a retryable failure leaves it in-progress.
   */
  async settle(row: PrescriptionRow, requestId: string): Promise<PrescriptionRow> {
    if (row.dispense.status !== "in-progress") return row;
    if (this.now() - row.dispense.createdAt.getTime() >= this.d.retryWindowMs) {
      await this.reconcile(row, "dispense", "retry-window-passed");
      return (await byId(this.d.pool, row.id)) ?? row;
    }
    let result: WriteResult;
    try {
      const writing = this.d.inventory.write(
        "deduct",
        {
          requestId: deductRequestId(row.dispense.id),
          clinicId: row.clinic,
          medicationCode: row.medicationCode,
          quantity: row.quantity,
        },
        requestId,
      );
      if (this.d.crashpoints.has("medication-after-deduct-sent")) {
        // The write leaves on the next turn of the event loop (the client batches a turn's writes).
        setTimeout(() => crashpoint(this.d.crashpoints, "medication-after-deduct-sent"), 5);
      }
      result = await writing;
    } catch (err) {
      crashpoint(this.d.crashpoints, "medication-before-complete");
      if (err instanceof AppError && err.code === "INSUFFICIENT_STOCK") {
        await inTransaction(this.d.pool, (c) => declineDispense(c, row, "insufficient-stock"));
        settled.inc({ outcome: "declined" });
        return (await byId(this.d.pool, row.id)) ?? row;
      }
      if (isRetryable(err) || (err instanceof AppError && isTransient(err.code))) {
        this.d.log.warn(
          { requestId, dispenseId: row.dispense.id, code: (err as AppError).code },
          "deduct not settled; the recovery loop retries it",
        );
        return row;
      }
      // Anything else (a reused request id, a refusal that no retry can change) needs a person.
      const code = err instanceof AppError ? err.code : "INTERNAL";
      await this.reconcile(row, "dispense", code.toLowerCase());
      return (await byId(this.d.pool, row.id)) ?? row;
    }
    crashpoint(this.d.crashpoints, "medication-before-complete");
    const lots: DispensedLot[] = result.lots.map((l) => ({
      lot: l.lot,
      quantity: l.quantity,
      expiresOn: l.expiresOn,
    }));
    const took = lots.reduce((s, l) => s + l.quantity, 0);
    if (took !== row.quantity) {
      // A deduct applied by a build that did not answer lots replays without them: what was taken
      // from which lot is unknown, so a later cancel could not return it. A person decides.
      await this.reconcile(row, "dispense", took === 0 ? "lots-unknown" : "lots-mismatch");
      return (await byId(this.d.pool, row.id)) ?? row;
    }
    if (await inTransaction(this.d.pool, (c) => completeDispense(c, row, lots, result.index))) {
      settled.inc({ outcome: "completed" });
    }
    return (await byId(this.d.pool, row.id)) ?? row;
  }

  /**
   * Cancels a prescription. A completed dispense's lots go back (ReturnStock, request id derived
   * from the dispense id); a dispense still in-progress is settled first, so what goes back is
   * what was taken.
   */
  async cancel(id: string, requestId: string): Promise<PrescriptionRow> {
    let row = await byId(this.d.pool, id);
    if (!row) throw new AppError("PRESCRIPTION_NOT_FOUND", "no such prescription", "id");
    if (row.status === "cancelled") throw new AppError("ALREADY_CANCELLED", "prescription already cancelled");
    if (row.dispense.status === "in-progress") {
      row = await this.settle(row, requestId);
      if (row.dispense.status === "in-progress") this.outcome(row);
    }
    const current = row;
    if (!(await inTransaction(this.d.pool, (c) => cancelPrescription(c, current)))) {
      throw new AppError("ALREADY_CANCELLED", "prescription already cancelled");
    }
    const cancelled = (await byId(this.d.pool, id))!;
    return this.returnLots(cancelled, requestId);
  }

  /**
   * Cancels every prescription of an appointment not cancelled yet (after the appointment was
   * cancelled). Repeatable: one cancelled meanwhile by someone else counts as done.
   */
  async cancelAppointment(appointmentId: string, requestId: string): Promise<PrescriptionRow[]> {
    // First the marker, under the appointment's lock: a prescription inserting now either committed
    // before (and is cancelled below) or sees the marker and is refused.
    await inTransaction(this.d.pool, (c) => markAppointmentCancelled(c, appointmentId));
    const out: PrescriptionRow[] = [];
    let after: { createdAt: string; id: string } | undefined;
    for (;;) {
      const rows = await pageOf(this.d.pool, appointmentId, appointmentPageRows, after);
      for (const r of rows) {
        if (r.status === "cancelled") continue;
        try {
          out.push(await this.cancel(r.id, requestId));
        } catch (err) {
          if (!(err instanceof AppError && err.code === "ALREADY_CANCELLED")) throw err;
        }
      }
      const last = rows[rows.length - 1];
      if (rows.length < appointmentPageRows || !last) return out;
      after = { createdAt: last.createdAt.toISOString(), id: last.id };
    }
  }

  /** Puts a cancelled dispense's lots back (again: the same request id). */
  async returnLots(row: PrescriptionRow, requestId: string): Promise<PrescriptionRow> {
    if (row.dispense.returnStatus !== "in-progress") return row;
    const started = row.dispense.returnStartedAt?.getTime() ?? row.createdAt.getTime();
    if (this.now() - started >= this.d.retryWindowMs) {
      await this.reconcile(row, "return", "retry-window-passed");
      return (await byId(this.d.pool, row.id)) ?? row;
    }
    try {
      const { returnLotsMax } = inventoryLimits;
      for (let part = 0; part * returnLotsMax < row.dispense.lots.length; part++) {
        await this.d.inventory.write(
          "returnStock",
          {
            requestId: returnRequestId(row.dispense.id, part),
            clinicId: row.clinic,
            medicationCode: row.medicationCode,
            lots: row.dispense.lots.slice(part * returnLotsMax, (part + 1) * returnLotsMax),
          },
          requestId,
        );
      }
    } catch (err) {
      if (isRetryable(err) || (err instanceof AppError && isTransient(err.code))) {
        this.d.log.warn(
          { requestId, dispenseId: row.dispense.id, code: (err as AppError).code },
          "return not settled; the recovery loop retries it",
        );
        return row;
      }
      const code = err instanceof AppError ? err.code : "INTERNAL";
      await this.reconcile(row, "return", code.toLowerCase());
      return (await byId(this.d.pool, row.id)) ?? row;
    }
    crashpoint(this.d.crashpoints, "medication-before-returned");
    await markReturned(this.d.pool, row.dispense.id, "returned");
    return (await byId(this.d.pool, row.id)) ?? row;
  }

  private async reconcile(row: PrescriptionRow, what: "dispense" | "return", reason: string) {
    if (what === "dispense") await markReconcile(this.d.pool, row.dispense.id, reason);
    else await markReturned(this.d.pool, row.dispense.id, "reconcile");
    reconciles.inc({ what });
    this.d.log.error(
      { event: "medication_reconcile", what, dispenseId: row.dispense.id, prescriptionId: row.id, reason },
      "could not settle within the retry window: marked for manual reconciliation",
    );
  }
}

/** Refusals that pass on their own: a full idempotency window, an overloaded client queue. */
function isTransient(code: string): boolean {
  return code === "IDEMPOTENCY_WINDOW_FULL" || code === "OVERLOADED" || code === "INTERNAL";
}
