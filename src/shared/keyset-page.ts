// Owns the page tokens of the services' keyset-paged lists: an opaque (timestamp, id) position. The
// timestamp is carried at PostgreSQL's own precision (microseconds, as text in UTC): a millisecond
// JS Date would skip or repeat rows stamped within the same millisecond at a page boundary. The
// errors name `limit` and `cursor`, the REST query parameters these arrive as at the gateway.
import { AppError } from "./errors.ts";
import { isUuid } from "./validation.ts";

export interface Position {
  /** The timestamp as PostgreSQL wrote it (positionTimeSql): YYYY-MM-DDTHH:MM:SS.ffffffZ. */
  at: string;
  id: string;
}

export interface PageLimits {
  pageLimitDefault: number;
  pageLimitMax: number;
  cursorMax: number;
}

/** SQL for a timestamptz column in the position's form. */
export const positionTimeSql = (column: string) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const timePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export const encodePosition = (p: Position) =>
  Buffer.from(JSON.stringify([p.at, p.id])).toString("base64url");

/** "" → the first page; a token this service gave out → its position; anything else → VALIDATION. */
export function decodePosition(s: string, limits: PageLimits): Position | undefined {
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
        return { at: v[0], id: v[1].toLowerCase() };
      }
    } catch {
      // falls through to the refusal
    }
  }
  throw new AppError("VALIDATION", "cursor is not one this service gave out", "cursor");
}

/** 0 → the default page size; otherwise 1-pageLimitMax or a VALIDATION naming limit. */
export function pageLimit(n: number, limits: PageLimits): number {
  if (n === 0) return limits.pageLimitDefault;
  if (!Number.isInteger(n) || n < 1 || n > limits.pageLimitMax) {
    throw new AppError("VALIDATION", `limit must be an integer from 1 to ${limits.pageLimitMax}`, "limit");
  }
  return n;
}
