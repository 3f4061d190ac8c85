// Owns what the medication service does with the appointment service's events: an appointment
// cancelled → its prescriptions cancelled, their stock returned (saga.ts). It reads the event
// stream as a consumer group of its own ("medication"): at least once, and the cancel is
// repeatable, so a redelivery changes nothing. Every other topic is acknowledged and ignored.
import type { HandleResult } from "../shared/stream-consumer.ts";
import type { StreamEvent } from "../shared/stream-events.ts";
import { isUuid } from "../shared/validation.ts";
import type { Saga } from "./saga.ts";

export const medicationGroup = "medication";

export function appointmentEventHandler(saga: Saga): (ev: StreamEvent) => Promise<HandleResult> {
  return async (ev) => {
    if (ev.topic !== "appointment.cancelled") return "ignored";
    const id = (ev.payload as { appointmentId?: unknown } | null)?.appointmentId;
    if (typeof id !== "string" || !isUuid(id)) return "poison";
    // A failure (PostgreSQL away, a dispense not settled yet) throws: the entry stays pending and
    // comes back by a claim.
    await saga.cancelAppointment(id.toLowerCase(), `event-${ev.eventId}`);
    return "new";
  };
}
