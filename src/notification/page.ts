// Owns the notification service's page cursors: the shared keyset position (src/shared/keyset-page.ts,
// microsecond created_at and id) under the names this service's lists use, and its page limits.
import {
  decodePosition,
  encodePosition,
  pageLimit as limitOf,
  positionTimeSql,
} from "../shared/keyset-page.ts";
import { notificationLimits as limits } from "../shared/validation.ts";

export interface Cursor {
  /** created_at as PostgreSQL wrote it: YYYY-MM-DDTHH:MM:SS.ffffffZ. */
  createdAt: string;
  id: string;
}

/** SQL for a created_at column in the cursor's form. */
export const cursorTimeSql = positionTimeSql;

export const encodeCursor = (c: Cursor) => encodePosition({ at: c.createdAt, id: c.id });

/** "" → the first page; a cursor this service gave out → its position; anything else → VALIDATION. */
export function decodeCursor(s: string): Cursor | undefined {
  const p = decodePosition(s, limits);
  return p && { createdAt: p.at, id: p.id };
}

/** 0 → the default page size; otherwise 1-pageLimitMax or a VALIDATION naming limit. */
export const pageLimit = (limit: number) => limitOf(limit, limits);

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
