// Owns the appointment side of the REST surface: clinics, practitioners and slots (the directory
// and its cache tiers), and booking, reading and cancelling appointments. Mounted by the gateway as
// one peer among the route modules (app.ts composePeers); every answer comes from the appointment
// service over gRPC. The clinic and practitioner lists are paged here, at the gateway, over the
// service's whole answer: a clinic group's clinics and a clinic's staff are tens, read in one call,
// and keyset cursors by name then id (pagination.ts heldPageOf) walk them once each whatever is
// added meanwhile.
import { randomUUID } from "node:crypto";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { TypedResponse } from "hono";
import { CacheTier } from "../gen/medisync/v1/appointment.ts";
import type { AppointmentClient } from "../shared/appointment-client.ts";
import { positionKeyOf } from "../shared/keyset-page.ts";
import { counter } from "../shared/metrics.ts";
import { appointmentLimits } from "../shared/validation.ts";
import type { GatewayEnv } from "./app.ts";
import { heldCursorOf, heldPageOf, type PageLimits, pageQuery, pageSchema } from "./pagination.ts";
import { mount } from "./route.ts";
import {
  Appointment,
  AppointmentParams,
  BookBody,
  Clinic,
  ClinicParams,
  CreateSlotsBody,
  IdempotencyHeaders,
  IdempotencyKeyHeader,
  json,
  jsonBody,
  Practitioner,
  problemDoc,
  Slot,
  SlotDay,
  SlotsQuery,
} from "./schemas.ts";
import type { SlotTier } from "./slot-tier.ts";
import { appointmentView, slotView } from "./views.ts";

export interface AppointmentRouteDeps {
  appointments: AppointmentClient;
  /** The gateway's own slot tier (slot-tier.ts) in front of the service's. */
  slotTier: SlotTier;
}

const slotTiers = counter("medisync_gateway_slot_reads_total", "Slot reads by the tier that served them", [
  "tier",
]);

const tierName: Record<CacheTier, string> = {
  [CacheTier.CACHE_TIER_UNSPECIFIED]: "db",
  [CacheTier.CACHE_TIER_LRU]: "lru",
  [CacheTier.CACHE_TIER_REDIS]: "redis",
  [CacheTier.CACHE_TIER_DB]: "db",
  [CacheTier.UNRECOGNIZED]: "db",
};

/** The directory lists' pages: the limits of the appointment service's own lists. */
export const directoryPageLimits: PageLimits = {
  limitMax: appointmentLimits.pageLimitMax,
  limitDefault: appointmentLimits.pageLimitDefault,
  cursorMax: appointmentLimits.cursorMax,
};
const DirectoryQuery = pageQuery(directoryPageLimits);
const ClinicPage = pageSchema(Clinic, "ClinicPage");
const PractitionerPage = pageSchema(Practitioner, "PractitionerPage");
const byName = (x: { name: string; id: string }) => ({ key: positionKeyOf(x.name), id: x.id });

export function addAppointmentRoutes(app: OpenAPIHono<GatewayEnv>, deps: AppointmentRouteDeps): void {
  const { appointments } = deps;
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/clinics",
      summary: "List clinics, by name then id",
      request: { query: DirectoryQuery },
      responses: {
        200: json(ClinicPage, "Clinics with their IANA time zones; nextCursor is null on the last page"),
        400: problemDoc("Invalid limit or cursor"),
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const after = heldCursorOf(cursor, directoryPageLimits);
      const { clinics } = await appointments.listClinics(c.get("requestId"));
      const view = (k: (typeof clinics)[number]) => ({
        id: k.id,
        code: k.code,
        name: k.name,
        timeZone: k.timeZone,
      });
      return c.json(heldPageOf(clinics, byName, view, limit, after), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/clinics/{clinicId}/practitioners",
      summary: "List a clinic's practitioners, by name then id",
      request: { params: ClinicParams, query: DirectoryQuery },
      responses: {
        200: json(PractitionerPage, "Practitioners; nextCursor is null on the last page"),
        400: problemDoc("Invalid clinic id, limit or cursor"),
        404: problemDoc("No such clinic"),
      },
    }),
    async (c) => {
      const { clinicId } = c.req.valid("param");
      const { limit, cursor } = c.req.valid("query");
      const after = heldCursorOf(cursor, directoryPageLimits);
      const { practitioners } = await appointments.listPractitioners(clinicId, c.get("requestId"));
      const view = (p: (typeof practitioners)[number]) => ({ id: p.id, clinicId: p.clinicId, name: p.name });
      return c.json(heldPageOf(practitioners, byName, view, limit, after), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/clinics/{clinicId}/slots",
      summary: "Create slots of `minutes` each between start and end (admin)",
      request: { params: ClinicParams, body: jsonBody(CreateSlotsBody) },
      responses: {
        201: json(z.array(Slot), "The created slots"),
        400: problemDoc("Invalid input"),
        404: problemDoc("No such clinic or practitioner"),
        409: problemDoc("Overlaps existing slots"),
        422: problemDoc("start is in the past"),
      },
    }),
    async (c) => {
      const { clinicId } = c.req.valid("param");
      const body = c.req.valid("json");
      const { slots } = await appointments.createSlots({ clinicId, ...body }, c.get("requestId"));
      return c.json(slots.map(slotView), 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/clinics/{clinicId}/slots",
      summary:
        "Slots of one day in the clinic's own time zone; X-Cache names the tier that answered (gateway, or the appointment service's lru, redis or db)",
      request: { params: ClinicParams, query: SlotsQuery },
      responses: {
        200: {
          ...json(SlotDay, "The day's slots"),
          headers: z.object({ "X-Cache": z.enum(["gateway", "lru", "redis", "db"]) }),
        },
        400: problemDoc("Invalid input"),
        404: problemDoc("No such clinic"),
      },
    }),
    async (c) => {
      const { clinicId } = c.req.valid("param");
      const { date, practitionerId } = c.req.valid("query");
      const { body, tier } = await deps.slotTier.read(
        { clinicId, date, practitionerId },
        () => appointments.listSlots(clinicId, date, practitionerId, c.get("requestId")),
        (day) => JSON.stringify({ clinicId: day.clinicId, date: day.date, slots: day.slots.map(slotView) }),
        (day) => tierName[day.tier],
      );
      slotTiers.inc({ tier });
      c.header("X-Cache", tier);
      // The body is the SlotDay JSON, rendered once when the answer was fetched (above): typed as
      // what c.json would have sent, which it is byte for byte.
      return c.body(body, 200, { "content-type": "application/json" }) as unknown as TypedResponse<
        z.infer<typeof SlotDay>,
        200,
        "json"
      >;
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/appointments",
      summary: "Book a slot; the same Idempotency-Key returns the first result and books nothing new",
      description:
        "Without an Idempotency-Key the gateway makes one up. Every answer names the key used (header " +
        '`Idempotency-Key`, and `idempotencyKey` in a problem), so a client told 503 "retry with the ' +
        'same Idempotency-Key" can do exactly that.',
      request: { headers: IdempotencyHeaders, body: jsonBody(BookBody) },
      responses: {
        201: {
          ...json(Appointment, "Booked (Idempotent-Replayed: true when this repeats an earlier request)"),
          headers: IdempotencyKeyHeader,
        },
        400: problemDoc("Invalid input"),
        404: problemDoc("No such slot"),
        409: problemDoc("Slot already booked"),
        422: problemDoc("Idempotency key used for a different request, or the slot is in the past"),
        503: {
          ...problemDoc("Not acknowledged yet: retry with the same Idempotency-Key (the one in the answer)"),
          headers: IdempotencyKeyHeader,
        },
      },
    }),
    async (c) => {
      const { slotId } = c.req.valid("json");
      // A patient books for themselves (the body's patientId, when given, was checked to be theirs).
      const admission = c.get("admission");
      const patientId = admission.facts.patientId ?? admission.principal.sub;
      // Without a caller's key the gateway makes one, so its own retries can never book twice; the
      // answer names it, so the caller's retries cannot either.
      const key = c.req.valid("header")["Idempotency-Key"] ?? `gw-${randomUUID()}`;
      c.header("Idempotency-Key", key);
      c.set("idempotencyKey", key);
      // The token's clinic codes, as it names them: the appointment service checks the slot's.
      const clinicScope = admission.grant === "clinic" ? admission.principal.clinics : undefined;
      const { appointment, replayed } = await appointments.book(
        slotId,
        patientId,
        key,
        c.get("requestId"),
        clinicScope,
      );
      c.set("resourceId", appointment.id);
      if (replayed) c.header("Idempotent-Replayed", "true");
      return c.json(appointmentView(appointment), 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/appointments/{id}",
      summary: "One appointment",
      request: { params: AppointmentParams },
      responses: {
        200: json(Appointment, "The appointment"),
        400: problemDoc("Invalid id"),
        404: problemDoc("No such appointment"),
      },
    }),
    async (c) =>
      c.json(appointmentView(await appointments.get(c.req.valid("param").id, c.get("requestId"))), 200),
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/appointments/{id}/cancel",
      summary: "Cancel an appointment; its slot becomes free",
      request: { params: AppointmentParams },
      responses: {
        200: json(Appointment, "Cancelled"),
        400: problemDoc("Invalid id"),
        404: problemDoc("No such appointment"),
        409: problemDoc("Already cancelled"),
      },
    }),
    async (c) =>
      c.json(appointmentView(await appointments.cancel(c.req.valid("param").id, c.get("requestId"))), 200),
  );
}
