// Owns the calendar rules of the appointment service: what a valid date and time zone are.
import { AppError } from "../shared/errors.ts";

const datePattern = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A real calendar date YYYY-MM-DD (2026-02-30 is not). */
export function isCalendarDate(s: string): boolean {
  const m = datePattern.exec(s);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1970 || y > 9999) return false;
  const dt = new Date(Date.UTC(y, mo - 1, d));
  return dt.getUTCFullYear() === y && dt.getUTCMonth() === mo - 1 && dt.getUTCDate() === d;
}

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

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function requireUuid(s: string, field: string): string {
  if (!uuidPattern.test(s)) throw new AppError("VALIDATION", `${field} must be a UUID`, field);
  return s.toLowerCase();
}

/** An RFC 3339 date-time with an explicit offset. */
export function requireInstant(s: string, field: string): Date {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(s)) {
    throw new AppError("VALIDATION", `${field} must be an RFC 3339 date-time with offset`, field);
  }
  const d = new Date(s);
  if (Number.isNaN(d.getTime()) || !isCalendarDate(s.slice(0, 10))) {
    throw new AppError("VALIDATION", `${field} is not a real instant`, field);
  }
  return d;
}
