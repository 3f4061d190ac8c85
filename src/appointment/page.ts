// Owns the appointment service's page tokens: an opaque (slot start, appointment id) position in a
// patient's appointments, newest first. The start is carried at PostgreSQL's own precision
// (microseconds, as text in UTC): a millisecond JS Date would skip or repeat appointments whose
// slots start within the same millisecond at a page boundary. The errors name `limit` and `cursor`,
// the REST query parameters these fields arrive as at the gateway, as every list in MediSync does.
import { AppError } from "../shared/errors.ts";
import { isUuid, appointmentLimits as limits } from "../shared/validation.ts";

export interface PagePosition {
  /** The slot's starts_at as PostgreSQL wrote it: YYYY-MM-DDTHH:MM:SS.ffffffZ. */
  startsAt: string;
  id: string;
}

/** SQL for a timestamptz column in the position's form. */
export const positionTimeSql = (column: string) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const timePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export const encodePageToken = (p: PagePosition) =>
  Buffer.from(JSON.stringify([p.startsAt, p.id])).toString("base64url");

/** "" → the first page; a token this service gave out → its position; anything else → VALIDATION. */
export function decodePageToken(s: string): PagePosition | undefined {
  if (s === "") return undefined;
  if (s.length <= limits.cursorMax) {
    try {
      const v: unknown = JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
      if (
        Array.isArray(v) &&
        v.length === 2 &&
        typeof v[0] === "string" &&
        timePattern.test(v[0]) &&
        !Number.isNaN(Date.parse(v[0])) &&
        typeof v[1] === "string" &&
        isUuid(v[1])
      ) {
        return { startsAt: v[0], id: v[1].toLowerCase() };
      }
    } catch {
      // falls through to the refusal
    }
  }
  throw new AppError("VALIDATION", "cursor is not one this service gave out", "cursor");
}

/** 0 → the default page size; otherwise 1-pageLimitMax or a VALIDATION naming limit. */
export function pageSize(n: number): number {
  if (n === 0) return limits.pageLimitDefault;
  if (!Number.isInteger(n) || n < 1 || n > limits.pageLimitMax) {
    throw new AppError("VALIDATION", `limit must be an integer from 1 to ${limits.pageLimitMax}`, "limit");
  }
  return n;
}
