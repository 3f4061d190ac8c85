// Owns the notification service's page cursors: an opaque (created_at, id) position. created_at is
// carried at PostgreSQL's own precision (microseconds, as text in UTC): a millisecond JS Date would
// skip or repeat rows stamped within the same millisecond at a page boundary.
import { AppError } from "../shared/errors.ts";
import { isUuid, notificationLimits as limits } from "../shared/validation.ts";

export interface Cursor {
  /** created_at as PostgreSQL wrote it: YYYY-MM-DDTHH:MM:SS.ffffffZ. */
  createdAt: string;
  id: string;
}

/** SQL for a created_at column in the cursor's form. */
export const cursorTimeSql = (column: string) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const timePattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

export const encodeCursor = (c: Cursor) =>
  Buffer.from(JSON.stringify([c.createdAt, c.id])).toString("base64url");

export function decodeCursor(s: string): Cursor | undefined {
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
        return { createdAt: v[0], id: v[1].toLowerCase() };
      }
    } catch {
      // falls through to the refusal
    }
  }
  throw new AppError("VALIDATION", "cursor is not one this service gave out", "cursor");
}

/** 0 → the default page size; otherwise 1-pageLimitMax or a VALIDATION naming limit. */
export function pageLimit(limit: number): number {
  if (limit === 0) return limits.pageLimitDefault;
  if (!Number.isInteger(limit) || limit < 1 || limit > limits.pageLimitMax) {
    throw new AppError("VALIDATION", `limit must be an integer from 1 to ${limits.pageLimitMax}`, "limit");
  }
  return limit;
}

/** Rows were read with one more than `limit`: the page, and the cursor after it when there is more. */
export function pageOf<R extends { cursorAt: string; id: string }>(
  rows: R[],
  limit: number,
): { page: R[]; nextCursor: string } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    page,
    nextCursor: rows.length > limit && last ? encodeCursor({ createdAt: last.cursorAt, id: last.id }) : "",
  };
}
