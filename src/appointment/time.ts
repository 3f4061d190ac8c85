// Owns the calendar rules of the appointment service: what a valid date, instant and time zone are,
// and that nothing is created or booked in the past.
import { AppError } from "../shared/errors.ts";
import {
  calendarDateRule,
  calendarRangeText,
  isCalendarDate,
  isInstant,
  isTimeZone,
  isUuid,
} from "../shared/validation.ts";

export function requireDate(s: string, field: string): string {
  if (!isCalendarDate(s)) throw new AppError("VALIDATION", `${field} must be ${calendarDateRule}`, field);
  return s;
}

// The zone rule is shared with the inventory (lot expiry in the clinic's zone): it lives in validation.ts.
export { isTimeZone };

export function requireTimeZone(tz: string, field = "timeZone"): string {
  if (!isTimeZone(tz)) throw new AppError("VALIDATION", `${field} must be an IANA time zone name`, field);
  return tz;
}

export function requireUuid(s: string, field: string): string {
  if (!isUuid(s)) throw new AppError("VALIDATION", `${field} must be a UUID`, field);
  return s.toLowerCase();
}

/** An RFC 3339 date-time with an explicit offset. */
export function requireInstant(s: string, field: string): Date {
  if (!isInstant(s)) {
    throw new AppError(
      "VALIDATION",
      `${field} must be an RFC 3339 date-time with offset, ${calendarRangeText}`,
      field,
    );
  }
  return new Date(s);
}

/** Slots are made for what is still ahead: one that starts before `now` would be a booking trap. */
export function requireNotPast(t: Date, field: string, now = new Date()): Date {
  if (t.getTime() < now.getTime()) throw new AppError("SLOT_IN_PAST", `${field} is in the past`, field);
  return t;
}
