// Owns which events make which notifications: one handler per topic, each with the schema of its
// payload. A new event type (prescriptions, low stock) is one entry here.
import { z } from "zod";
import { bookedMessage, cancelledMessage, type Message, prescriptionMessage } from "./messages.ts";

/** What one event asks the service to tell one patient. */
export interface NotificationDraft extends Message {
  patientId: string;
  clinicId: string;
  kind: string;
  /** What a webhook receives of the event besides the notification: ids and codes only, no PHI. */
  data: Record<string, string | number>;
}

export interface EventHandler {
  topic: string;
  /** Undefined when the payload does not fit: the entry is a poison message (dead-lettered). */
  draft(payload: unknown): NotificationDraft | undefined;
}

const appointmentEvent = z.object({
  appointmentId: z.string().uuid(),
  clinicId: z.string().uuid(),
  patientId: z.string().uuid(),
  start: z.string().datetime({ offset: true }),
  clinicName: z.string().min(1).max(200),
  timeZone: z.string().min(1).max(64),
});

function appointmentHandler(topic: string, kind: string, message: typeof bookedMessage): EventHandler {
  return {
    topic,
    draft(payload) {
      const p = appointmentEvent.safeParse(payload);
      if (!p.success) return undefined;
      try {
        return {
          patientId: p.data.patientId,
          clinicId: p.data.clinicId,
          kind,
          data: { appointmentId: p.data.appointmentId },
          ...message(p.data),
        };
      } catch {
        return undefined; // a time zone Intl does not know
      }
    },
  };
}

const prescriptionEvent = z.object({
  prescriptionId: z.string().uuid(),
  clinicId: z.string().uuid(),
  patientId: z.string().uuid(),
  medicationCode: z.string().min(1).max(64),
  quantity: z.number().int().positive(),
  status: z.enum(["completed", "stopped", "cancelled"]),
});

function prescriptionHandler(topic: string, kind: string): EventHandler {
  return {
    topic,
    draft(payload) {
      const p = prescriptionEvent.safeParse(payload);
      if (!p.success) return undefined;
      return {
        patientId: p.data.patientId,
        clinicId: p.data.clinicId,
        kind,
        data: {
          prescriptionId: p.data.prescriptionId,
          medicationCode: p.data.medicationCode,
          quantity: p.data.quantity,
          status: p.data.status,
        },
        ...prescriptionMessage(p.data),
      };
    },
  };
}

export const handlers: ReadonlyMap<string, EventHandler> = new Map(
  [
    appointmentHandler("appointment.booked", "appointment-booked", bookedMessage),
    appointmentHandler("appointment.cancelled", "appointment-cancelled", cancelledMessage),
    prescriptionHandler("prescription.issued", "prescription-issued"),
    prescriptionHandler("prescription.declined", "prescription-declined"),
    prescriptionHandler("prescription.cancelled", "prescription-cancelled"),
  ].map((h) => [h.topic, h]),
);
