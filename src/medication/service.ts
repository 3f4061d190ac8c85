// Owns the MedicationService gRPC handlers: every request field checked (a VALIDATION error names
// it), then the saga (saga.ts) or a read (repo.ts). Callers are the gateway and the client.

import type pg from "pg";
import type { Logger } from "pino";
import type { Dosage, MedicationServiceServer } from "../gen/medisync/v1/medication.ts";
import { AppError } from "../shared/errors.ts";
import { unary } from "../shared/grpc.ts";
import {
  idempotencyKeyPattern,
  inventoryLimits,
  isUuid,
  prescriptionLimits as limits,
} from "../shared/validation.ts";
import { byId, pageOf, toMessage } from "./repo.ts";
import type { Saga } from "./saga.ts";

function uuid(value: string, field: string): string {
  if (!isUuid(value)) throw new AppError("VALIDATION", `${field} must be a UUID`, field);
  return value.toLowerCase();
}

function int(value: number, field: string, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new AppError("VALIDATION", `${field} must be an integer from 1 to ${max}`, field);
  }
  return value;
}

function medicationCode(value: string): string {
  const { codeMax, codePattern } = inventoryLimits;
  if (value.length === 0 || value.length > codeMax || !codePattern.test(value)) {
    throw new AppError(
      "VALIDATION",
      `medicationCode must be 1-${codeMax} of [A-Za-z0-9_.:-]`,
      "medicationCode",
    );
  }
  return value;
}

function dosage(d: Dosage | undefined): Dosage {
  if (!d) throw new AppError("VALIDATION", "dosage is required", "dosage");
  if (!(limits.dosageUnits as readonly string[]).includes(d.unit)) {
    throw new AppError(
      "VALIDATION",
      `dosage.unit must be one of ${limits.dosageUnits.join(", ")}`,
      "dosage.unit",
    );
  }
  return {
    amount: int(d.amount, "dosage.amount", limits.doseAmountMax),
    unit: d.unit,
    timesPerDay: int(d.timesPerDay, "dosage.timesPerDay", limits.timesPerDayMax),
    days: int(d.days, "dosage.days", limits.daysMax),
  };
}

interface Cursor {
  createdAt: string;
  id: string;
}

const encodeCursor = (c: Cursor) => Buffer.from(JSON.stringify([c.createdAt, c.id])).toString("base64url");

function decodeCursor(s: string): Cursor | undefined {
  if (s === "") return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
    if (
      Array.isArray(v) &&
      v.length === 2 &&
      typeof v[0] === "string" &&
      !Number.isNaN(Date.parse(v[0])) &&
      typeof v[1] === "string" &&
      isUuid(v[1])
    ) {
      return { createdAt: v[0], id: v[1] };
    }
  } catch {
    // falls through to the refusal
  }
  throw new AppError("VALIDATION", "cursor is not one this service gave out", "cursor");
}

export function createMedicationHandlers(deps: {
  pool: pg.Pool;
  saga: Saga;
  log: Logger;
}): MedicationServiceServer {
  const { pool, saga, log } = deps;
  return {
    issuePrescription: unary(log, "IssuePrescription", async (req, ctx) => {
      if (!idempotencyKeyPattern.test(req.idempotencyKey)) {
        throw new AppError(
          "VALIDATION",
          "idempotencyKey must be 1-200 of [A-Za-z0-9_.:-]",
          "Idempotency-Key",
        );
      }
      const input = {
        appointmentId: uuid(req.appointmentId, "appointmentId"),
        medicationCode: medicationCode(req.medicationCode),
        quantity: int(req.quantity, "quantity", limits.quantityMax),
        dosage: dosage(req.dosage),
        idempotencyKey: req.idempotencyKey,
      };
      const { row, replayed } = await saga.issue(input, ctx.requestId);
      return { prescription: toMessage(row), replayed };
    }),
    getPrescription: unary(log, "GetPrescription", async (req) => {
      const row = await byId(pool, uuid(req.id, "id"));
      if (!row) throw new AppError("PRESCRIPTION_NOT_FOUND", "no such prescription", "id");
      return { prescription: toMessage(row) };
    }),
    listPrescriptions: unary(log, "ListPrescriptions", async (req) => {
      const appointmentId = uuid(req.appointmentId, "appointmentId");
      const limit = req.limit === 0 ? limits.pageLimitDefault : int(req.limit, "limit", limits.pageLimitMax);
      // One more than asked: whether a next page exists, without a count.
      const rows = await pageOf(pool, appointmentId, limit + 1, decodeCursor(req.cursor));
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        prescriptions: page.map(toMessage),
        nextCursor:
          rows.length > limit && last
            ? encodeCursor({ createdAt: last.createdAt.toISOString(), id: last.id })
            : "",
      };
    }),
    cancelPrescription: unary(log, "CancelPrescription", async (req, ctx) => ({
      prescription: toMessage(await saga.cancel(uuid(req.id, "id"), ctx.requestId)),
    })),
    cancelAppointmentPrescriptions: unary(log, "CancelAppointmentPrescriptions", async (req, ctx) => ({
      prescriptions: (
        await saga.cancelAppointment(uuid(req.appointmentId, "appointmentId"), ctx.requestId)
      ).map(toMessage),
    })),
  };
}
