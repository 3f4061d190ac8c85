// Owns the AppointmentService gRPC handlers: input checks (the service never trusts its caller),
// the repository calls, cache reads and invalidation before every write is acknowledged, and the
// pages of a patient's appointments.
import type pg from "pg";
import type { Logger } from "pino";
import {
  type Appointment,
  type AppointmentServiceServer,
  AppointmentStatus,
  CacheTier,
  type ListSlotsRequest,
  type ListSlotsResponse,
  type ListSlotsStreamRequest,
  type ListSlotsStreamResponse,
  type Slot,
  SlotStatus,
} from "../gen/medisync/v1/appointment.ts";
import { callStreamHandler, OpenStreams } from "../shared/call-stream.ts";
import { AppError, noWireError, toWireError } from "../shared/errors.ts";
import { type CallContext, handlerRunner, unary } from "../shared/grpc.ts";
import { decodePosition, encodePosition, pageLimit } from "../shared/keyset-page.ts";
import { appointmentLimits, idempotencyKeyPattern } from "../shared/validation.ts";
import * as repo from "./repo.ts";
import { encodeListSlots, lruAnswer } from "./slot-answer.ts";
import type { SlotCache, Tier } from "./slot-cache.ts";
import { requireDate, requireInstant, requireNotPast, requireUuid } from "./time.ts";

const slotMinutesMin = 5;
const slotMinutesMax = 480;
const slotRangeDaysMax = 31;

const tierToProto: Record<Tier, CacheTier> = {
  lru: CacheTier.CACHE_TIER_LRU,
  redis: CacheTier.CACHE_TIER_REDIS,
  db: CacheTier.CACHE_TIER_DB,
};

function slotToProto(s: repo.SlotView): Slot {
  return {
    id: s.id,
    clinicId: s.clinicId,
    practitionerId: s.practitionerId,
    start: s.start,
    end: s.end,
    status: s.status === "booked" ? SlotStatus.SLOT_STATUS_BOOKED : SlotStatus.SLOT_STATUS_FREE,
  };
}

/** The status filter of a list: UNSPECIFIED is every status. */
function statusFilter(s: AppointmentStatus): repo.AppointmentState | undefined {
  switch (s) {
    case AppointmentStatus.APPOINTMENT_STATUS_UNSPECIFIED:
      return undefined;
    case AppointmentStatus.APPOINTMENT_STATUS_BOOKED:
      return "booked";
    case AppointmentStatus.APPOINTMENT_STATUS_CANCELLED:
      return "cancelled";
    default:
      throw new AppError("VALIDATION", "status must be booked or cancelled", "status");
  }
}

function appointmentToProto(a: repo.AppointmentView): Appointment {
  return {
    ...a,
    status:
      a.status === "booked"
        ? AppointmentStatus.APPOINTMENT_STATUS_BOOKED
        : AppointmentStatus.APPOINTMENT_STATUS_CANCELLED,
  };
}

export interface ServiceDeps {
  pool: pg.Pool;
  cache: SlotCache;
  log: Logger;
  /** Where ListSlotsStream's streams are kept, for the server to drain them before it shuts down. */
  streams?: OpenStreams;
}

export function createAppointmentHandlers({
  pool,
  cache,
  log,
  streams = new OpenStreams(),
}: ServiceDeps): AppointmentServiceServer {
  // Clinics change rarely and a slot read must not pay a query to learn that its clinic exists.
  const knownClinics = new Set<string>();
  const requireClinic = async (id: string) => {
    const clinicId = requireUuid(id, "clinicId");
    if (knownClinics.has(clinicId)) return clinicId;
    if (!(await repo.getClinic(pool, clinicId)))
      throw new AppError("CLINIC_NOT_FOUND", "no such clinic", "clinicId");
    knownClinics.add(clinicId);
    return clinicId;
  };

  // No async context (AsyncLocalStorage): on Node 20 it hooks every promise of the process, a
  // cost every cached read paid. Code below the handlers that logs is handed the call's logger.
  const handler = unary;

  const listSlots = async (req: ListSlotsRequest, ctx: CallContext): Promise<ListSlotsResponse> => {
    const date = requireDate(req.date, "date");
    const practitionerId =
      req.practitionerId === "" ? undefined : requireUuid(req.practitionerId, "practitionerId");
    const clinicId = await requireClinic(req.clinicId);
    const { day, tier } = await cache.read(clinicId, date, ctx);
    if (tier === "lru" && !practitionerId) return lruAnswer(clinicId, date, day, slotToProto);
    const slots = practitionerId ? day.slots.filter((s) => s.practitionerId === practitionerId) : day.slots;
    return { clinicId, date, slots: slots.map(slotToProto), tier: tierToProto[tier], version: day.version };
  };

  return {
    listClinics: handler(log, "ListClinics", async () => ({ clinics: await repo.listClinics(pool) })),

    listPractitioners: handler(log, "ListPractitioners", async (req) => {
      const clinicId = await requireClinic(req.clinicId);
      return { practitioners: await repo.listPractitioners(pool, clinicId) };
    }),

    createSlots: handler(log, "CreateSlots", async (req, ctx) => {
      const clinicId = requireUuid(req.clinicId, "clinicId");
      const practitionerId = requireUuid(req.practitionerId, "practitionerId");
      const start = requireInstant(req.start, "start");
      const end = requireInstant(req.end, "end");
      if (!Number.isInteger(req.minutes) || req.minutes < slotMinutesMin || req.minutes > slotMinutesMax) {
        throw new AppError(
          "VALIDATION",
          `minutes must be an integer from ${slotMinutesMin} to ${slotMinutesMax}`,
          "minutes",
        );
      }
      if (end <= start) throw new AppError("VALIDATION", "end must be after start", "end");
      if (end.getTime() - start.getTime() > slotRangeDaysMax * 86_400_000) {
        throw new AppError("VALIDATION", `the range may span at most ${slotRangeDaysMax} days`, "end");
      }
      requireNotPast(start, "start");
      const { slots, changes } = await repo.createSlots(pool, {
        clinicId,
        practitionerId,
        start,
        end,
        minutes: req.minutes,
      });
      // New free slots: a reader briefly missing them breaks no promise, so no need to withhold.
      await cache.invalidate(changes, ctx);
      return { slots: slots.map(slotToProto) };
    }),

    listSlots: handler(log, "ListSlots", listSlots),
    listSlotsStream: callStreamHandler<
      ListSlotsStreamRequest,
      ListSlotsRequest,
      ListSlotsResponse,
      ListSlotsStreamResponse
    >({
      read: (f) => ({
        id: f.id,
        requestId: f.requestId,
        request: f.query ?? { clinicId: "", date: "", practitionerId: "" },
      }),
      run: handlerRunner(log, "ListSlots", listSlots),
      answer: (id, r) =>
        "res" in r
          ? { id, answer: encodeListSlots(r.res), ...noWireError }
          : { id, answer: Buffer.alloc(0), ...toWireError(r.err) },
      streams,
    }),

    book: handler(log, "Book", async (req, ctx) => {
      const slotId = requireUuid(req.slotId, "slotId");
      const patientId = requireUuid(req.patientId, "patientId");
      if (req.idempotencyKey !== "" && !idempotencyKeyPattern.test(req.idempotencyKey)) {
        throw new AppError(
          "VALIDATION",
          "idempotency key must be 1-200 of [A-Za-z0-9_.:-]",
          "idempotencyKey",
        );
      }
      const result = await repo.book(pool, {
        slotId,
        patientId,
        idempotencyKey: req.idempotencyKey,
        ...(req.clinicScope
          ? { clinicsAllowed: { ids: req.clinicScope.clinicIds, codes: req.clinicScope.clinicCodes } }
          : {}),
      });
      if (!(await cache.invalidate([result.change], ctx))) {
        // The booking is durable, but an instance that still reaches Redis could show the slot free
        // until the version is raised there, so it is not acknowledged yet. A retry with the same
        // key replays it and raises the version first.
        throw new AppError(
          "UNAVAILABLE",
          "booking recorded but not yet visible everywhere; retry with the same Idempotency-Key",
          undefined,
          { appointment: result.appointment.id },
        );
      }
      ctx.log.info({ appointmentId: result.appointment.id, replayed: result.replayed }, "booked");
      return { appointment: appointmentToProto(result.appointment), replayed: result.replayed };
    }),

    cancel: handler(log, "Cancel", async (req, ctx) => {
      const id = requireUuid(req.appointmentId, "id");
      const { appointment, change } = await repo.cancel(pool, id);
      // A freed slot shown booked a moment longer breaks no promise; the change is retried anyway.
      await cache.invalidate([change], ctx);
      ctx.log.info({ appointmentId: id }, "cancelled");
      return { appointment: appointmentToProto(appointment) };
    }),

    get: handler(log, "Get", async (req) => {
      const id = requireUuid(req.appointmentId, "id");
      return { appointment: appointmentToProto(await repo.getAppointment(pool, id)) };
    }),

    listPatientAppointments: handler(log, "ListPatientAppointments", async (req) => {
      const patientId = requireUuid(req.patientId, "patientId");
      const size = pageLimit(req.pageSize, appointmentLimits);
      const after = decodePosition(req.pageToken, appointmentLimits);
      const named = (req.clinicScope?.clinicIds.length ?? 0) + (req.clinicScope?.clinicCodes.length ?? 0);
      if (named > appointmentLimits.scopeClinicsMax) {
        throw new AppError(
          "VALIDATION",
          `a clinic scope names at most ${appointmentLimits.scopeClinicsMax} clinics`,
          "clinicScope",
        );
      }
      const scope = req.clinicScope && {
        clinicIds: req.clinicScope.clinicIds.map((id, i) => requireUuid(id, `clinicScope.clinicIds.${i}`)),
        clinicCodes: req.clinicScope.clinicCodes.map((code, i) => {
          if (!repo.clinicCodePattern.test(code))
            throw new AppError(
              "VALIDATION",
              "a clinic code is 1-64 of [a-z0-9-]",
              `clinicScope.clinicCodes.${i}`,
            );
          return code;
        }),
      };
      // One more than asked: whether a next page exists, without a count.
      const rows = await repo.listPatientAppointments(pool, {
        patientId,
        rowsMax: size + 1,
        after,
        status: statusFilter(req.status),
        scope,
      });
      const page = rows.slice(0, size);
      const last = page[page.length - 1];
      return {
        appointments: page.map(({ position: _, ...a }) => appointmentToProto(a)),
        nextPageToken: rows.length > size && last ? encodePosition(last.position) : "",
      };
    }),
  };
}
