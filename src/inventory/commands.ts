// Owns the inventory commands as they travel in Raft log entries: their shape, their limits and
// their encoding. Every command carries a request id (for exactly-once apply) and the leader's
// timestamp (so expiry decisions are the same on every replica).
import { z } from "zod";
import { inventoryLimits } from "../shared/validation.ts";

export const { codeMax, quantityMax, requestIdMax } = inventoryLimits;

const id = z.string().min(1).max(codeMax).regex(inventoryLimits.codePattern);
const qty = z.number().int().positive().max(quantityMax);
const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/);
const base = {
  requestId: z.string().min(1).max(requestIdMax),
  /** Leader's clock, ms since epoch, stamped when proposed. */
  ts: z.number().int().nonnegative(),
};

export const commandSchema = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("restock"),
    ...base,
    clinicId: id,
    medicationCode: id,
    quantity: qty,
    lot: id.optional(),
    expiresOn: date.optional(),
  }),
  z.object({ type: z.literal("deduct"), ...base, clinicId: id, medicationCode: id, quantity: qty }),
  z.object({
    type: z.literal("transfer"),
    ...base,
    fromClinicId: id,
    toClinicId: id,
    medicationCode: id,
    quantity: qty,
  }),
  z.object({
    type: z.literal("setReorderLevel"),
    ...base,
    clinicId: id,
    medicationCode: id,
    level: z.number().int().nonnegative().max(quantityMax),
  }),
]);

export type Command = z.infer<typeof commandSchema>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(c: Command): Uint8Array {
  return encoder.encode(JSON.stringify(c));
}

/** Decodes a committed entry; a malformed one is a replica bug, so this throws. */
export function decodeCommand(data: Uint8Array): Command {
  return commandSchema.parse(JSON.parse(decoder.decode(data)));
}
