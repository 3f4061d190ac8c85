// Owns the wording of what a patient is told: the clinic, the appointment's local date and time in
// the clinic's own time zone, and what changed. A message names one patient's appointment only;
// a staff alert names a clinic and a medication, no patient.

const formats = new Map<string, Intl.DateTimeFormat>();

function formatIn(timeZone: string): Intl.DateTimeFormat {
  let f = formats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-GB", {
      timeZone,
      weekday: "long",
      year: "numeric",
      month: "long",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
      timeZoneName: "short",
    });
    formats.set(timeZone, f);
  }
  return f;
}

/** "Monday 3 March 2031 at 09:30 GMT+1" in the clinic's zone (the zone is named, so no guessing). */
export function localWhen(instant: string, timeZone: string): string {
  const parts = formatIn(timeZone).formatToParts(new Date(instant));
  const part = (t: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === t)?.value ?? "";
  return `${part("weekday")} ${part("day")} ${part("month")} ${part("year")} at ${part("hour")}:${part("minute")} ${part("timeZoneName")}`;
}

export interface Message {
  subject: string;
  body: string;
}

export function bookedMessage(a: { clinicName: string; start: string; timeZone: string }): Message {
  const when = localWhen(a.start, a.timeZone);
  return {
    subject: `Appointment confirmed: ${a.clinicName}, ${when}`,
    body: `Your appointment at ${a.clinicName} on ${when} is booked.`,
  };
}

export function cancelledMessage(a: { clinicName: string; start: string; timeZone: string }): Message {
  const when = localWhen(a.start, a.timeZone);
  return {
    subject: `Appointment cancelled: ${a.clinicName}, ${when}`,
    body: `Your appointment at ${a.clinicName} on ${when} has been cancelled.`,
  };
}

/** A prescription's news, by its status: dispensed, declined for stock, cancelled. */
export function prescriptionMessage(p: {
  medicationCode: string;
  quantity: number;
  status: string;
}): Message {
  switch (p.status) {
    case "completed":
      return {
        subject: `Prescription ready: ${p.medicationCode}`,
        body: `Your prescription of ${p.quantity} × ${p.medicationCode} has been dispensed.`,
      };
    case "stopped":
      return {
        subject: `Prescription not dispensed: ${p.medicationCode}`,
        body: `Your prescription of ${p.quantity} × ${p.medicationCode} could not be dispensed: the clinic is out of stock. The clinic will contact you.`,
      };
    default:
      return {
        subject: `Prescription cancelled: ${p.medicationCode}`,
        body: `Your prescription of ${p.quantity} × ${p.medicationCode} has been cancelled.`,
      };
  }
}

/** A staff alert: a clinic's stock of one medication fell to or under its reorder level. */
export function lowStockMessage(s: {
  clinic: string;
  medicationCode: string;
  quantity: number;
  reorderLevel: number;
}): Message {
  return {
    subject: `Low stock: ${s.medicationCode} at ${s.clinic}`,
    body: `${s.clinic} has ${s.quantity} × ${s.medicationCode} left (reorder level ${s.reorderLevel}). Reorder soon.`,
  };
}
