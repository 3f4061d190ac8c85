// Owns what the medication service asks of an appointment: whether it is booked, its clinic (code,
// the stock's key, and id) and its patient, from the appointment service over gRPC.
import { AppointmentStatus } from "../gen/medisync/v1/appointment.ts";
import type { AppointmentClient } from "../shared/appointment-client.ts";
import type { AppointmentFacts } from "./saga.ts";

export function appointmentFacts(
  appointments: AppointmentClient,
): (id: string, requestId: string) => Promise<AppointmentFacts> {
  return async (id, requestId) => {
    const a = await appointments.get(id, requestId);
    return {
      booked: a.status === AppointmentStatus.APPOINTMENT_STATUS_BOOKED,
      clinic: a.clinicCode,
      clinicId: a.clinicId,
      patientId: a.patientId,
    };
  };
}
