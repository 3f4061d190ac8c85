// Owns the prescription REST routes: issue (with Idempotency-Key, made up when the caller sends
// none, named in every answer so a retry can reuse it), read one, list an appointment's (paginated)
// and cancel. Every answer comes from the medication service over gRPC.
import { randomUUID } from "node:crypto";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Prescription as PrescriptionMsg } from "../gen/medisync/v1/medication.ts";
import { inventoryLimits, prescriptionLimits as limits } from "../shared/validation.ts";
import type { GatewayEnv } from "./app.ts";
import type { MedicationClient } from "./medication-client.ts";
import { type PageLimits, pageOf, pageQuery, pageSchema, pageTokenOf } from "./pagination.ts";
import { mount } from "./route.ts";
import {
  AppointmentParams,
  IdempotencyHeaders,
  IdempotencyKeyHeader,
  json,
  jsonBody,
  problemDoc,
  uuid,
} from "./schemas.ts";

const { codeMax, codePattern } = inventoryLimits;

const Dosage = z
  .strictObject({
    amount: z.number().int().min(1).max(limits.doseAmountMax).openapi({ example: 1 }),
    unit: z.enum(limits.dosageUnits).openapi({ example: "tablet" }),
    timesPerDay: z.number().int().min(1).max(limits.timesPerDayMax).openapi({ example: 3 }),
    days: z.number().int().min(1).max(limits.daysMax).openapi({ example: 7 }),
  })
  .openapi("Dosage", {
    description: "structured dosage (FHIR Dosage): amount of unit, times a day, for days",
  });

const IssueBody = z
  .strictObject({
    appointmentId: uuid("appointmentId"),
    medicationCode: z
      .string()
      .max(codeMax)
      .regex(codePattern, `medicationCode must be 1-${codeMax} of [A-Za-z0-9_.:-]`)
      .openapi({ example: "amoxicillin-500mg" }),
    quantity: z.number().int().min(1).max(limits.quantityMax).openapi({ example: 21 }),
    dosage: Dosage,
  })
  .openapi("PrescriptionRequest");

const DispensedLot = z.object({
  lot: z.string(),
  quantity: z.number().int(),
  expiresOn: z.string().nullable(),
});

const Prescription = z
  .object({
    id: z.string(),
    appointmentId: z.string(),
    clinic: z.string().openapi({ description: "the clinic's code: the stock the medicine came from" }),
    patientId: z.string(),
    medicationCode: z.string(),
    quantity: z.number().int(),
    dosage: Dosage,
    status: z.enum(["active", "completed", "cancelled", "stopped", "entered-in-error"]).openapi({
      description: "FHIR MedicationRequest.status",
    }),
    statusReason: z.string().nullable(),
    createdAt: z.string().openapi({ format: "date-time" }),
    dispense: z.object({
      id: z.string(),
      status: z.enum(["in-progress", "completed", "declined", "cancelled", "reconcile"]).openapi({
        description: "FHIR MedicationDispense.status; reconcile: a person must settle it",
      }),
      statusReason: z.string().nullable(),
      lots: z.array(DispensedLot),
      inventoryIndex: z
        .number()
        .int()
        .openapi({ description: "Raft log index of the deduct (0 until completed)" }),
      returnStatus: z.enum(["none", "in-progress", "returned", "reconcile"]).openapi({
        description: "after a cancel: whether the lots went back to stock",
      }),
    }),
  })
  .openapi("Prescription");

const PrescriptionParams = z.object({
  id: uuid("id").openapi({ param: { name: "id", in: "path" } }),
});

const pageLimits: PageLimits = {
  limitMax: limits.pageLimitMax,
  limitDefault: limits.pageLimitDefault,
  cursorMax: limits.cursorMax,
};
const PageQuery = pageQuery(pageLimits);

const PrescriptionPage = pageSchema(Prescription, "PrescriptionPage");

const view = (p: PrescriptionMsg) => ({
  id: p.id,
  appointmentId: p.appointmentId,
  clinic: p.clinic,
  patientId: p.patientId,
  medicationCode: p.medicationCode,
  quantity: p.quantity,
  dosage: { ...p.dosage!, unit: p.dosage!.unit as (typeof limits.dosageUnits)[number] },
  status: p.status as z.infer<typeof Prescription>["status"],
  statusReason: p.statusReason || null,
  createdAt: p.createdAt,
  dispense: {
    id: p.dispense?.id ?? "",
    status: (p.dispense?.status ?? "in-progress") as z.infer<typeof Prescription>["dispense"]["status"],
    statusReason: p.dispense?.statusReason || null,
    lots: (p.dispense?.lots ?? []).map((l) => ({
      lot: l.lot,
      quantity: l.quantity,
      expiresOn: l.expiresOn || null,
    })),
    inventoryIndex: p.dispense?.inventoryIndex ?? 0,
    returnStatus: (p.dispense?.returnStatus ?? "none") as z.infer<
      typeof Prescription
    >["dispense"]["returnStatus"],
  },
});

export function addPrescriptionRoutes(app: OpenAPIHono<GatewayEnv>, medication: MedicationClient): void {
  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/prescriptions",
      summary: "Prescribe for a booked appointment; the clinic's stock goes down by the quantity, once",
      description:
        "The prescription and its dispense are recorded before inventory is asked, and the deduction " +
        "happens exactly once whatever crashes (docs/medication.md). The same Idempotency-Key returns " +
        "the first result; without one the gateway makes one up and names it in the answer.",
      request: { headers: IdempotencyHeaders, body: jsonBody(IssueBody) },
      responses: {
        201: {
          ...json(Prescription, "Prescribed and dispensed (Idempotent-Replayed: true for a repeat)"),
          headers: IdempotencyKeyHeader,
        },
        400: problemDoc("Invalid input"),
        404: problemDoc("No such appointment"),
        409: problemDoc(
          "appointment-not-booked, or insufficient-stock (the prescription is on record, stopped: meta prescriptionId)",
        ),
        422: problemDoc("Idempotency-Key used for a different prescription"),
        503: {
          ...problemDoc("Not settled yet: retry with the same Idempotency-Key"),
          headers: IdempotencyKeyHeader,
        },
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const key = c.req.valid("header")["Idempotency-Key"] ?? `gw-${randomUUID()}`;
      c.header("Idempotency-Key", key);
      c.set("idempotencyKey", key);
      const { prescription, replayed } = await medication.issue(body, key, c.get("requestId"));
      c.set("resourceId", prescription.id);
      if (replayed) c.header("Idempotent-Replayed", "true");
      return c.json(view(prescription), 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/prescriptions/{id}",
      summary: "One prescription with its dispense",
      request: { params: PrescriptionParams },
      responses: {
        200: json(Prescription, "The prescription"),
        400: problemDoc("Invalid id"),
        404: problemDoc("No such prescription"),
      },
    }),
    async (c) => c.json(view(await medication.get(c.req.valid("param").id, c.get("requestId"))), 200),
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/appointments/{id}/prescriptions",
      summary: "An appointment's prescriptions, oldest first, a page at a time",
      request: { params: AppointmentParams, query: PageQuery },
      responses: {
        200: json(PrescriptionPage, "One page; nextCursor is null on the last"),
        400: problemDoc("Invalid id, limit or cursor"),
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const res = await medication.list(
        c.req.valid("param").id,
        limit,
        pageTokenOf(cursor, pageLimits),
        c.get("requestId"),
      );
      return c.json(pageOf(res.prescriptions, view, res.nextCursor), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/prescriptions/{id}/cancel",
      summary: "Cancel a prescription; what its dispense took goes back to the same lots",
      request: { params: PrescriptionParams },
      responses: {
        200: json(Prescription, "Cancelled (dispense.returnStatus says whether the stock is back yet)"),
        400: problemDoc("Invalid id"),
        404: problemDoc("No such prescription"),
        409: problemDoc("Already cancelled"),
      },
    }),
    async (c) => c.json(view(await medication.cancel(c.req.valid("param").id, c.get("requestId"))), 200),
  );
}
