// Owns how the appointment service's messages look on the REST wire: a slot and an appointment as
// the Slot and Appointment schemas (schemas.ts) describe them. Every route that answers one of
// them (app.ts's appointment routes, patient-routes.ts's list) goes through these.
import {
  type Appointment as AppointmentMsg,
  AppointmentStatus,
  type Slot as SlotMsg,
  SlotStatus,
} from "../gen/medisync/v1/appointment.ts";

export const slotView = (s: SlotMsg) => ({
  id: s.id,
  practitionerId: s.practitionerId,
  start: s.start,
  end: s.end,
  status: s.status === SlotStatus.SLOT_STATUS_BOOKED ? ("booked" as const) : ("free" as const),
});

export const appointmentView = (a: AppointmentMsg) => ({
  id: a.id,
  slotId: a.slotId,
  patientId: a.patientId,
  clinicId: a.clinicId,
  practitionerId: a.practitionerId,
  start: a.start,
  end: a.end,
  status:
    a.status === AppointmentStatus.APPOINTMENT_STATUS_CANCELLED
      ? ("cancelled" as const)
      : ("booked" as const),
});
