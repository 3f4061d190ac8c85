// Owns the page tokens of the services' keyset-paged lists: an opaque position, of one of two kinds.
// A time position (timestamp, id) for lists in time order: the timestamp is carried at PostgreSQL's
// own precision (microseconds, as text in UTC), since a millisecond JS Date would skip or repeat rows
// stamped within the same millisecond at a page boundary. A key position (text key, id) for lists in
// name or code order, and the paging of such a list when it is held whole in memory. The errors name
// `limit` and `cursor`, the REST query parameters these arrive as at the gateway.
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

/**
 * A position in a list ordered by text rather than time: a sort key (a name, a medication code),
 * then an id as tie-break ("" where the key alone is unique). Compared as code units, the same in
 * every process, so whoever pages (a service, or the gateway over a list it holds whole) keeps
 * one order whatever a database's collation says.
 */
export interface KeyPosition {
  key: string;
  id: string;
}

/**
 * Bytes of a key in a position's JSON, at most: a key position's token stays under 512 characters
 * (the services' cursorMax) whatever the text, escapes and multi-byte characters included.
 */
export const positionKeyBytesMax = 256;

const keyBytes = (s: string) => Buffer.byteLength(JSON.stringify(s)) - 2;

/**
 * The sort key of `text`: the text itself, or for a very long one its longest prefix that fits
 * positionKeyBytesMax (items that share such a prefix are then ordered by id).
 */
export function positionKeyOf(text: string): string {
  if (keyBytes(text) <= positionKeyBytesMax) return text;
  let key = "";
  let bytes = 0;
  for (const ch of text) {
    bytes += keyBytes(ch);
    if (bytes > positionKeyBytesMax) break;
    key += ch;
  }
  return key;
}

/** Orders key positions: by key, then id, as code units. */
export const compareKeyPositions = (a: KeyPosition, b: KeyPosition): number =>
  a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;

// Tagged, so a time position's token is never taken for a key position's, nor the other way round.
export const encodeKeyPosition = (p: KeyPosition) =>
  Buffer.from(JSON.stringify(["k", p.key, p.id])).toString("base64url");

/** "" → the first page; a key position this process's kind gave out → it; anything else → VALIDATION. */
export function decodeKeyPosition(s: string, limits: Pick<PageLimits, "cursorMax">): KeyPosition | undefined {
  if (s === "") return undefined;
  if (s.length <= limits.cursorMax) {
    try {
      const v: unknown = JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
      if (
        Array.isArray(v) &&
        v.length === 3 &&
        v[0] === "k" &&
        typeof v[1] === "string" &&
        positionKeyOf(v[1]) === v[1] &&
        typeof v[2] === "string" &&
        (v[2] === "" || isUuid(v[2]))
      ) {
        return { key: v[1], id: v[2].toLowerCase() };
      }
    } catch {
      // falls through to the refusal
    }
  }
  throw new AppError("VALIDATION", "cursor is not one this service gave out", "cursor");
}

/**
 * One page of a list held whole in memory (a clinic's stock, the clinic directory): the first `size`
 * items strictly after `after` in key-position order, and the token of the next page ("" on the
 * last). `items` need not be sorted.
 */
export function pageOfHeld<T>(
  items: readonly T[],
  positionOf: (item: T) => KeyPosition,
  after: KeyPosition | undefined,
  size: number,
): { page: T[]; nextPageToken: string } {
  const keyed = items.map((item) => ({ item, at: positionOf(item) }));
  const rest = (after ? keyed.filter((k) => compareKeyPositions(k.at, after) > 0) : keyed).sort((a, b) =>
    compareKeyPositions(a.at, b.at),
  );
  const page = rest.slice(0, size);
  const last = page[page.length - 1];
  return {
    page: page.map((k) => k.item),
    nextPageToken: rest.length > size && last ? encodeKeyPosition(last.at) : "",
  };
}
