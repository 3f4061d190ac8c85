// Owns the REST contract: every request and response shape as a zod schema. The same schemas
// validate requests and generate /openapi.json, so the documentation cannot drift from the code.
import { z } from "@hono/zod-openapi";
import {
  calendarDateRule,
  calendarRangeText,
  idempotencyKeyPattern,
  isCalendarDate,
  isInstant,
  isUuid,
} from "../shared/validation.ts";

export const uuid = (name: string) =>
  z
    .string()
    .refine(isUuid, { message: `${name} must be a UUID` })
    .openapi({ format: "uuid", example: "0b0e8d6a-8f0b-4c3e-9d1b-6a3c5e2f1a77" });

export const calendarDate = z
  .string()
  .refine(isCalendarDate, { message: `must be ${calendarDateRule}` })
  .openapi({ format: "date", example: "2026-12-01" });

export const instant = z
  .string()
  .max(40)
  .refine(isInstant, { message: `must be an RFC 3339 date-time with offset, ${calendarRangeText}` })
  .openapi({ format: "date-time", example: "2026-12-01T09:00:00+01:00" });

export const ClinicParams = z.object({
  clinicId: uuid("clinicId").openapi({ param: { name: "clinicId", in: "path" } }),
});
export const AppointmentParams = z.object({
  id: uuid("id").openapi({ param: { name: "id", in: "path" } }),
});

export const Clinic = z
  .object({
    id: z.string(),
    code: z.string().openapi({
      example: "harbour",
      description: "stable; what the inventory routes name the clinic by (/v1/inventory/{code}/…)",
    }),
    name: z.string(),
    timeZone: z.string().openapi({ example: "Europe/Berlin" }),
  })
  .openapi("Clinic");

export const Practitioner = z
  .object({ id: z.string(), clinicId: z.string(), name: z.string() })
  .openapi("Practitioner");

export const SlotStatus = z.enum(["free", "booked"]);
export const Slot = z
  .object({
    id: z.string(),
    practitionerId: z.string(),
    start: z.string().openapi({ format: "date-time" }),
    end: z.string().openapi({ format: "date-time" }),
    status: SlotStatus,
  })
  .openapi("Slot");

export const CreateSlotsBody = z
  .strictObject({
    practitionerId: uuid("practitionerId"),
    start: instant,
    end: instant,
    minutes: z.number().int().min(5).max(480).openapi({ example: 30 }),
  })
  .openapi("CreateSlotsRequest");

export const SlotsQuery = z.strictObject({
  date: calendarDate.openapi({ param: { name: "date", in: "query" } }),
  practitionerId: uuid("practitionerId")
    .optional()
    .openapi({ param: { name: "practitionerId", in: "query", required: false } }),
});

export const SlotDay = z
  .object({ clinicId: z.string(), date: z.string(), slots: z.array(Slot) })
  .openapi("SlotDay");

export const BookBody = z
  .strictObject({
    slotId: uuid("slotId"),
    patientId: uuid("patientId").optional().openapi({
      description: "The patient booked for: a patient's token may leave it out (it books for itself)",
    }),
  })
  .openapi("BookRequest");

export const IdempotencyHeaders = z.object({
  "Idempotency-Key": z
    .string()
    .regex(idempotencyKeyPattern, "must be 1-200 of [A-Za-z0-9_.:-]")
    .optional()
    .openapi({ param: { name: "Idempotency-Key", in: "header", required: false } }),
});

/** The key a booking was made under: the caller's, or the one the gateway made up for it. */
export const IdempotencyKeyHeader = z.object({
  "Idempotency-Key": z.string().openapi({ description: "the Idempotency-Key this booking was tried with" }),
});

export const Appointment = z
  .object({
    id: z.string(),
    slotId: z.string(),
    patientId: z.string(),
    clinicId: z.string(),
    practitionerId: z.string(),
    start: z.string().openapi({ format: "date-time" }),
    end: z.string().openapi({ format: "date-time" }),
    status: z.enum(["booked", "cancelled"]),
  })
  .openapi("Appointment");

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: "https://medisync.dev/problems/slot-taken" }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string(),
    field: z.string().optional(),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
    requestId: z.string().optional(),
    idempotencyKey: z
      .string()
      .optional()
      .openapi({ description: "bookings: the Idempotency-Key to retry with (made up when none was sent)" }),
    prescriptionId: z
      .string()
      .optional()
      .openapi({ description: "prescriptions declined or not settled yet: the one on record" }),
  })
  .openapi("Problem");

export const problemDoc = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: ProblemSchema } },
});

/** An OpenAPI response with a JSON body. */
export const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});

/** A required JSON request body: its absence is a validation error, not an empty object. */
export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { "application/json": { schema } },
});
