// Owns list pages at the gateway: the `limit` and `cursor` query parameters every list takes, what a
// cursor is, and the `{items, nextCursor}` shape every list answers (docs/api.md, "Pagination").
// A cursor is the page token of the service behind the route, handed to the client as it is: each
// service's tokens are already base64url of JSON (a keyset position), opaque to the client and
// meaningful only to the service that made them. The gateway checks a cursor's shape, so garbage
// costs no call; the service checks its meaning and refuses a token it did not give out, naming
// `cursor` too. `nextCursor` is null on the last page. A list the gateway reads whole from a service
// that does not page it (heldPageOf) is paged here, with the services' own key positions.
import { z } from "@hono/zod-openapi";
import { AppError } from "../shared/errors.ts";
import { decodeKeyPosition, type KeyPosition, pageOfHeld } from "../shared/keyset-page.ts";

/** One list's page limits: the largest page, the page when no limit is asked, the longest cursor. */
export interface PageLimits {
  limitMax: number;
  limitDefault: number;
  cursorMax: number;
}

/** The base64url alphabet (no padding) that every service's page tokens are written in. */
const cursorPattern = /^[A-Za-z0-9_-]*$/;

export const cursorMessage = "cursor is not one this service gave out";

/** Whether `s` can be a cursor at all (the service behind still decides whether it is one of its own). */
export const isCursorShape = (s: string, limits: PageLimits) =>
  s.length <= limits.cursorMax && cursorPattern.test(s);

/**
 * The query parameters of a list, as zod schema pieces to spread into a route's query schema:
 * `limit` 1..limitMax (limitDefault when absent), `cursor` an optional opaque string.
 */
export function pageQueryShape(limits: PageLimits) {
  return {
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(limits.limitMax)
      .default(limits.limitDefault)
      .openapi({
        param: { name: "limit", in: "query", required: false },
        description: `items per page, 1 to ${limits.limitMax}`,
        example: limits.limitDefault,
      }),
    cursor: z
      .string()
      .refine((s) => isCursorShape(s, limits), { message: cursorMessage })
      .optional()
      .openapi({
        param: { name: "cursor", in: "query", required: false },
        description: "the nextCursor of the page before; absent for the first page",
      }),
  };
}

/** A list's whole query schema: the page parameters and `extra` ones; anything else is refused. */
export function pageQuery<E extends z.ZodRawShape = Record<never, never>>(limits: PageLimits, extra?: E) {
  return z.strictObject({ ...pageQueryShape(limits), ...(extra ?? ({} as E)) });
}

/** The OpenAPI schema of one page of `item`, registered as the component `name` ("AppointmentPage"). */
export function pageSchema<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      items: z.array(item),
      nextCursor: z.string().nullable().openapi({ description: "null on the last page" }),
    })
    .openapi(name);
}

/**
 * The service page token a cursor stands for: "" (the first page) when there is none. For input
 * that did not pass pageQueryShape's check (a caller outside a mounted route), the same refusal.
 */
export function pageTokenOf(cursor: string | undefined, limits: PageLimits): string {
  if (cursor === undefined) return "";
  if (!isCursorShape(cursor, limits)) throw new AppError("VALIDATION", cursorMessage, "cursor");
  return cursor;
}

/** The cursor a client gets for a service's next page token: null when there is no next page. */
export const cursorOf = (nextPageToken: string): string | null => nextPageToken || null;

/** One page on the wire: the service's messages through `view`, and the cursor of the next page. */
export function pageOf<M, V>(
  messages: readonly M[],
  view: (m: M) => V,
  nextPageToken: string,
): { items: V[]; nextCursor: string | null } {
  return { items: messages.map(view), nextCursor: cursorOf(nextPageToken) };
}

/**
 * Where a page of a list the gateway holds whole (heldPageOf) starts: checked before the list is
 * read, so a cursor that is not one of these costs no call; refused naming `cursor`.
 */
export const heldCursorOf = (cursor: string | undefined, limits: PageLimits): KeyPosition | undefined =>
  decodeKeyPosition(pageTokenOf(cursor, limits), limits);

/**
 * One page of a list the gateway holds whole (small by nature, read in one call): the `limit` items
 * after `after` in the order of each item's key position (src/shared/keyset-page.ts); the next
 * cursor is a key position, as a service's would be.
 */
export function heldPageOf<T, V>(
  all: readonly T[],
  positionOf: (item: T) => KeyPosition,
  view: (item: T) => V,
  limit: number,
  after: KeyPosition | undefined,
): { items: V[]; nextCursor: string | null } {
  const { page, nextPageToken } = pageOfHeld(all, positionOf, after, limit);
  return pageOf(page, view, nextPageToken);
}
