// Owns which events make which notifications: one handler per topic, each with the schema of its
// payload. A new event type is one entry here.

import { z } from "zod";
import { lowStockTopic } from "../shared/validation.ts";
import {
  bookedMessage,
  cancelledMessage,
  lowStockMessage,
  type Message,
  prescriptionMessage,
} from "./messages.ts";

/**
 * What one event asks the service to tell: one patient (audience patient; e-mailed too when the
 * patient's contact is on record), or a clinic's staff (audience staff: an alert, webhooks only).
 */
export type NotificationDraft = Message & {
  kind: string;
  /** What a webhook receives of the event besides the notification: ids and codes only, no PHI. */
  data: Record<string, string | number>;
} & (
    | { audience: "patient"; patientId: string; clinicId: string }
    | { audience: "staff"; clinicCode: string }
  );

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
          audience: "patient",
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
        audience: "patient",
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

/** The inventory's topic (src/inventory/event-relay.ts): stock at or under its reorder level. */
export { lowStockTopic };

// As the relay writes it: the clinic is the inventory's clinic code, not the appointment side's id.
const lowStockEvent = z.object({
  clinic: z.string().min(1).max(64),
  medicationCode: z.string().min(1).max(64),
  quantity: z.number().int().nonnegative(),
  reorderLevel: z.number().int().nonnegative(),
  index: z.number().int().positive(),
});

const lowStockHandler: EventHandler = {
  topic: lowStockTopic,
  draft(payload) {
    const p = lowStockEvent.safeParse(payload);
    if (!p.success) return undefined;
    return {
      audience: "staff",
      clinicCode: p.data.clinic,
      kind: "low-stock",
      data: {
        clinic: p.data.clinic,
        medicationCode: p.data.medicationCode,
        quantity: p.data.quantity,
        reorderLevel: p.data.reorderLevel,
        index: p.data.index,
      },
      ...lowStockMessage(p.data),
    };
  },
};

export const handlers: ReadonlyMap<string, EventHandler> = new Map(
  [
    appointmentHandler("appointment.booked", "appointment-booked", bookedMessage),
    appointmentHandler("appointment.cancelled", "appointment-cancelled", cancelledMessage),
    prescriptionHandler("prescription.issued", "prescription-issued"),
    prescriptionHandler("prescription.declined", "prescription-declined"),
    prescriptionHandler("prescription.cancelled", "prescription-cancelled"),
    lowStockHandler,
  ].map((h) => [h.topic, h]),
);
