// Owns the calendar rules of the appointment service: what a valid date and time zone are.
import { AppError } from "../shared/errors.ts";
import { isCalendarDate, isInstant, isUuid } from "../shared/validation.ts";

export function requireDate(s: string, field: string): string {
  if (!isCalendarDate(s))
    throw new AppError("VALIDATION", `${field} must be a calendar date YYYY-MM-DD`, field);
  return s;
}

export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export function requireUuid(s: string, field: string): string {
  if (!isUuid(s)) throw new AppError("VALIDATION", `${field} must be a UUID`, field);
  return s.toLowerCase();
}

/** An RFC 3339 date-time with an explicit offset. */
export function requireInstant(s: string, field: string): Date {
  if (!isInstant(s)) {
    throw new AppError("VALIDATION", `${field} must be an RFC 3339 date-time with offset`, field);
  }
  return new Date(s);
}
