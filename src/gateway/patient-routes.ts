// Owns the patient-centred appointment routes: a patient's appointments, newest first (by start,
// ties by id), a page at a time, optionally only booked or only cancelled ones. Who may read whose
// is the pipeline's rule (a patient their own; staff their clinics'); this module only carries the
// staff's clinics to the appointment service, which filters by them in the same query that pages.
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { AppointmentStatus } from "../gen/medisync/v1/appointment.ts";
import type { AppointmentClient } from "../shared/appointment-client.ts";
import { appointmentLimits } from "../shared/validation.ts";
import type { GatewayEnv } from "./app.ts";
import { type PageLimits, pageOf, pageQuery, pageSchema, pageTokenOf } from "./pagination.ts";
import { mount } from "./route.ts";
import { Appointment, json, problemDoc, uuid } from "./schemas.ts";
import { appointmentView } from "./views.ts";

export const patientAppointmentPageLimits: PageLimits = {
  limitMax: appointmentLimits.pageLimitMax,
  limitDefault: appointmentLimits.pageLimitDefault,
  cursorMax: appointmentLimits.cursorMax,
};

/** The clinics a caller may see appointments at, by id or by code (an appointment at either shows). */
export interface ClinicScope {
  clinicIds: string[];
  clinicCodes: string[];
}

export interface PatientRouteDeps {
  appointments: AppointmentClient;
  /**
   * The clinics the request's caller may see (staff); undefined: no clinic filter (a patient
   * reading their own, an admin). An empty scope sees nothing. Set by whoever owns authorization.
   */
  clinicScope?: (c: Context<GatewayEnv>) => ClinicScope | undefined;
}

const PatientParams = z.object({
  id: uuid("id").openapi({ param: { name: "id", in: "path" } }),
});

const statuses = {
  booked: AppointmentStatus.APPOINTMENT_STATUS_BOOKED,
  cancelled: AppointmentStatus.APPOINTMENT_STATUS_CANCELLED,
} as const;

const PatientAppointmentsQuery = pageQuery(patientAppointmentPageLimits, {
  status: z
    .enum(["booked", "cancelled"])
    .optional()
    .openapi({ param: { name: "status", in: "query", required: false }, description: "absent: both" }),
});

const AppointmentPage = pageSchema(Appointment, "AppointmentPage");

export function addPatientRoutes(app: OpenAPIHono<GatewayEnv>, deps: PatientRouteDeps): void {
  const { appointments } = deps;
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/patients/{id}/appointments",
      summary: "A patient's appointments, newest first (by start, ties by id), cancelled ones included",
      description:
        "Pages walk every appointment once, whatever is booked meanwhile (keyset cursors). " +
        "`status` keeps only booked or only cancelled ones. Staff see their clinics' appointments only.",
      request: { params: PatientParams, query: PatientAppointmentsQuery },
      responses: {
        200: json(AppointmentPage, "One page; nextCursor is null on the last"),
        400: problemDoc("Invalid id, limit, cursor or status"),
      },
    }),
    async (c) => {
      const { limit, cursor, status } = c.req.valid("query");
      const res = await appointments.listPatientAppointments(
        {
          patientId: c.req.valid("param").id,
          pageSize: limit,
          pageToken: pageTokenOf(cursor, patientAppointmentPageLimits),
          clinicScope: deps.clinicScope?.(c),
          status: status && statuses[status],
        },
        c.get("requestId"),
      );
      return c.json(pageOf(res.appointments, appointmentView, res.nextPageToken), 200);
    },
  );
}
