// Owns the inventory commands as they travel in Raft log entries: their shape, their limits and
// their encoding. Every command carries a request id (for exactly-once apply) and the leader's
// timestamp (so expiry decisions are the same on every replica). One entry carries a batch of
// commands: the per-entry costs (log write, replication, apply bookkeeping) are then paid once per
// batch rather than once per command, which is what the write throughput hinges on.
import { z } from "zod";
import { inventoryLimits, isTimeZone } from "../shared/validation.ts";

export const { codeMax, quantityMax, requestIdMax } = inventoryLimits;
/**
 * Lots one ReturnStock puts back at most. A deduct rarely spans more than a few lots; the bound
 * keeps one command (and the answer remembered for it in the idempotency window) small. A deduct
 * that took more is returned in several ReturnStock calls.
 */
export const { returnLotsMax } = inventoryLimits;

const id = z.string().min(1).max(codeMax).regex(inventoryLimits.codePattern);
const qty = z.number().int().positive().max(quantityMax);
const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);
/** A lot put back by returnStock: expiresOn absent when it never expires. */
const returnedLot = z.strictObject({ lot: id, quantity: qty, expiresOn: date.optional() });
const base = {
  requestId: z.string().min(1).max(requestIdMax),
  /** Leader's clock, ms since epoch, stamped when proposed. */
  ts: z.number().int().nonnegative(),
};

export const commandSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("restock"),
    ...base,
    clinicId: id,
    medicationCode: id,
    quantity: qty,
    lot: id.optional(),
    expiresOn: date.optional(),
  }),
  z.strictObject({ type: z.literal("deduct"), ...base, clinicId: id, medicationCode: id, quantity: qty }),
  z.strictObject({
    type: z.literal("transfer"),
    ...base,
    fromClinicId: id,
    toClinicId: id,
    medicationCode: id,
    quantity: qty,
  }),
  z.strictObject({
    type: z.literal("setReorderLevel"),
    ...base,
    clinicId: id,
    medicationCode: id,
    level: z.number().int().nonnegative().max(quantityMax),
  }),
  z.strictObject({
    type: z.literal("setClinicTimeZone"),
    ...base,
    clinicId: id,
    /** IANA zone: the clinic's calendar decides when its lots expire. */
    timeZone: z.string().refine(isTimeZone),
  }),
  z.strictObject({
    /**
     * The leader published the low-stock events of entries up to throughIndex (the relay's cursor,
     * replicated so that a new leader resumes where the old one stopped).
     */
    type: z.literal("markEventsPublished"),
    ...base,
    throughIndex: z.number().int().positive(),
  }),
  z.strictObject({
    type: z.literal("returnStock"),
    ...base,
    clinicId: id,
    medicationCode: id,
    lots: z.array(returnedLot).min(1).max(returnLotsMax),
  }),
]);

export type Command = z.infer<typeof commandSchema>;

/** Commands in one log entry, and the entry's encoded size: bounds what one apply may do. */
export const { entryCommandsMax } = inventoryLimits;
export const entryBytesMax = 1 << 20;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommands(cmds: Command[]): Uint8Array {
  if (cmds.length === 0 || cmds.length > entryCommandsMax) {
    throw new Error(`invariant: an entry carries 1-${entryCommandsMax} commands, not ${cmds.length}`);
  }
  return encoder.encode(JSON.stringify(cmds));
}

const isCode = (v: unknown) =>
  typeof v === "string" && v.length > 0 && v.length <= codeMax && inventoryLimits.codePattern.test(v);
const isQuantity = (v: unknown, min = 1) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= quantityMax;
const isDate = (v: unknown) => typeof v === "string" && /^\d{4}-\d{2}-\d{2}$/.test(v);
const isReturnedLot = (v: unknown) => {
  if (!v || typeof v !== "object" || Array.isArray(v)) return false;
  const l = v as Record<string, unknown>;
  let keys = 0;
  for (const k in l) if (l[k] !== undefined) keys++;
  return (
    isCode(l.lot) &&
    isQuantity(l.quantity) &&
    (l.expiresOn === undefined || isDate(l.expiresOn)) &&
    keys === 2 + (l.expiresOn === undefined ? 0 : 1)
  );
};
const isReturnedLots = (v: unknown) =>
  Array.isArray(v) && v.length >= 1 && v.length <= returnLotsMax && v.every(isReturnedLot);

/**
 * The rules of commandSchema, checked by hand: this runs for every command on every replica, and a
 * zod parse of each was a tenth of a follower's apply. Commands were built and checked by the leader
 * that proposed them; this asserts it. (state-machine.test.ts checks both agree.)
 */
export function isCommand(x: unknown): x is Command {
  if (!x || typeof x !== "object") return false;
  const c = x as Record<string, unknown>;
  // Keys set to undefined count as absent, as they do for zod (and JSON never carries them).
  let keys = 0;
  for (const k in c) if (c[k] !== undefined) keys++;
  if (
    typeof c.requestId !== "string" ||
    c.requestId.length === 0 ||
    c.requestId.length > requestIdMax ||
    typeof c.ts !== "number" ||
    !Number.isSafeInteger(c.ts) ||
    c.ts < 0
  ) {
    return false;
  }
  switch (c.type) {
    case "restock":
      return (
        isCode(c.clinicId) &&
        isCode(c.medicationCode) &&
        isQuantity(c.quantity) &&
        (c.lot === undefined || isCode(c.lot)) &&
        (c.expiresOn === undefined || isDate(c.expiresOn)) &&
        keys === 6 + (c.lot === undefined ? 0 : 1) + (c.expiresOn === undefined ? 0 : 1)
      );
    case "deduct":
      return isCode(c.clinicId) && isCode(c.medicationCode) && isQuantity(c.quantity) && keys === 6;
    case "transfer":
      return (
        isCode(c.fromClinicId) &&
        isCode(c.toClinicId) &&
        isCode(c.medicationCode) &&
        isQuantity(c.quantity) &&
        keys === 7
      );
    case "setReorderLevel":
      return isCode(c.clinicId) && isCode(c.medicationCode) && isQuantity(c.level, 0) && keys === 6;
    case "setClinicTimeZone":
      return isCode(c.clinicId) && typeof c.timeZone === "string" && isTimeZone(c.timeZone) && keys === 5;
    case "returnStock":
      return isCode(c.clinicId) && isCode(c.medicationCode) && isReturnedLots(c.lots) && keys === 6;
    case "markEventsPublished":
      return (
        typeof c.throughIndex === "number" &&
        Number.isSafeInteger(c.throughIndex) &&
        c.throughIndex > 0 &&
        keys === 4
      );
    default:
      return false;
  }
}

/**
 * Decodes a committed entry; a malformed one is a replica bug, so this throws. An entry that is one
 * command object (no array) is the encoding before entries carried batches: logs written by earlier
 * builds replay as one-command entries.
 */
export function decodeCommands(data: Uint8Array): Command[] {
  const doc: unknown = JSON.parse(decoder.decode(data));
  const cmds = Array.isArray(doc) ? doc : [doc];
  if (cmds.length === 0 || cmds.length > entryCommandsMax) {
    throw new Error(`invariant: an entry carries 1-${entryCommandsMax} commands`);
  }
  for (const c of cmds) {
    if (!isCommand(c))
      throw new Error(`invariant: malformed command in a committed entry: ${JSON.stringify(c)}`);
  }
  return cmds as Command[];
}
