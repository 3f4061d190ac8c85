// Owns the shape rules every layer agrees on (calendar dates, UUIDs, instants, idempotency keys), as
// plain predicates, so the gateway's schemas and the services' own checks cannot drift apart.
import { snapshotBytesMax } from "../../raft/index.ts";

const datePattern = /^(\d{4})-(\d{2})-(\d{2})$/;

/** The dates (and instants) every layer accepts: messages name this range, so callers see the limit. */
export const calendarDateRange = { min: "1970-01-01", max: "9999-12-31" } as const;
/** What every layer says of a bad date or instant: the rule and its range. */
export const calendarRangeText = `from ${calendarDateRange.min} to ${calendarDateRange.max}`;
export const calendarDateRule = `a calendar date YYYY-MM-DD ${calendarRangeText}`;

/** A real calendar date YYYY-MM-DD (2026-02-30 is not) within calendarDateRange. */
export function isCalendarDate(s: string): boolean {
  const m = datePattern.exec(s);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1970 || y > 9999) return false;
  const dt = new Date(Date.UTC(y, mo - 1, d));
  return dt.getUTCFullYear() === y && dt.getUTCMonth() === mo - 1 && dt.getUTCDate() === d;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return uuidPattern.test(s);
}

const instantPattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 date-time with an explicit offset that names a real instant. */
export function isInstant(s: string): boolean {
  if (!instantPattern.test(s) || !isCalendarDate(s.slice(0, 10))) return false;
  return !Number.isNaN(new Date(s).getTime());
}

/**
 * An IANA zone name ("Europe/Berlin", "UTC", "Etc/GMT+5") that Intl knows. Offsets ("+05:00") and
 * POSIX strings ("EST-5") are refused: PostgreSQL reads them with the POSIX sign (east is minus),
 * the opposite of what they look like. PostgreSQL's own knowledge is checked where a zone is stored.
 */
export function isTimeZone(tz: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]{0,63}(\/[A-Za-z0-9_+-]{1,64}){0,2}$/.test(tz)) return false;
  if (/^[A-Za-z]{1,5}[+-]?\d/.test(tz)) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Idempotency keys are echoed into logs and keys: short and harmless only. */
export const idempotencyKeyPattern = /^[A-Za-z0-9_.:-]{1,200}$/;

/**
 * The inventory contract's limits, shared by the gateway (REST schemas, batching) and the inventory
 * service (gRPC checks, command schema), which must not import each other.
 */
const idempotencyIdBytesMax = 400;

export const inventoryLimits = {
  /** Clinic ids, medication codes and lot names. */
  codeMax: 64,
  codePattern: /^[A-Za-z0-9_.:-]+$/,
  quantityMax: 1_000_000_000,
  /** Units one stock item may hold in all (well below 2^53: int64 answers stay exact numbers). */
  stockQuantityMax: 1_000_000_000_000,
  requestIdMax: 200,
  /** Lots one ReturnStock puts back at most (the medication service splits a larger return). */
  returnLotsMax: 64,
  /** Commands in one SubmitBatch call. */
  batchCommandsMax: 256,
  /** Commands in one Raft log entry (the replica packs what arrives together). */
  entryCommandsMax: 1_024,
  /**
   * Snapshot bytes one remembered request id takes at most: an id of requestIdMax characters of
   * the Idempotency-Key alphabet (no JSON escapes), a kept refusal, large numbers (measured ~340 by
   * src/inventory/idempotency.test.ts, which holds the measurement under this).
   */
  idempotencyIdBytesMax,
  /**
   * The most request ids a replica may be configured to remember: their snapshot must fit in four
   * fifths of snapshotBytesMax (and of the longest JS string), the rest left for the stock. Past it
   * a snapshot could not be written and every replica would stop at the same index.
   */
  idempotencyIdsCeiling: Math.floor((0.8 * snapshotBytesMax) / idempotencyIdBytesMax),
  /** Stock lines per page of a clinic's stock (ListStock), as every list's. */
  pageLimitMax: 100,
  pageLimitDefault: 20,
  /** Characters of an opaque page cursor. */
  cursorMax: 512,
} as const;

/** Cluster membership (inventory admin): replica ids and addresses. */
export const clusterLimits = {
  memberIdMax: 63,
  /** Ids name a database (replicaDatabaseUrl) and a directory: letters, digits, '-' and '_'. */
  memberIdPattern: /^[A-Za-z0-9_-]+$/,
  /** host:port. */
  addressMax: 255,
} as const;

/**
 * Prescriptions (medication service and gateway alike). Dosage is structured, never free text: an
 * amount of a unit so many times a day for so many days (FHIR Dosage).
 */
export const prescriptionLimits = {
  /** Units handed out by one prescription. */
  quantityMax: 10_000,
  doseAmountMax: 1_000,
  dosageUnits: ["tablet", "capsule", "ml", "mg", "puff", "drop", "patch", "sachet"] as const,
  timesPerDayMax: 24,
  daysMax: 365,
  /** Page size of an appointment's prescriptions. */
  pageLimitMax: 100,
  pageLimitDefault: 20,
  /** Characters of an opaque page cursor. */
  cursorMax: 512,
} as const;

/**
 * Notifications and webhooks (notification service and gateway alike). The topics are the events
 * the notification service has handlers for (src/notification/handlers.ts; a test keeps them equal).
 */
/** The topic the inventory leader publishes low-stock alerts under (src/inventory/event-relay.ts). */
export const lowStockTopic = "inventory.low-stock";

export const notificationLimits = {
  webhookEvents: [
    "appointment.booked",
    "appointment.cancelled",
    "prescription.issued",
    "prescription.declined",
    "prescription.cancelled",
    lowStockTopic,
  ] as const,
  /** Characters of a webhook URL. */
  webhookUrlMax: 2_048,
  pageLimitMax: 100,
  pageLimitDefault: 20,
  /** Characters of an opaque page cursor. */
  cursorMax: 512,
} as const;

/** A patient's appointments, a page at a time (appointment service and gateway alike). */
export const appointmentLimits = {
  pageLimitMax: 100,
  pageLimitDefault: 20,
  /** Characters of an opaque page cursor. */
  cursorMax: 512,
  /** Clinics one staff scope (ListPatientAppointments' clinic_scope) may name, ids and codes together. */
  scopeClinicsMax: 1_000,
} as const;
