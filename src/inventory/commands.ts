// Owns the inventory commands as they travel in Raft log entries: their shape, their limits and
// their encoding. Every command carries a request id (for exactly-once apply) and the leader's
// timestamp (so expiry decisions are the same on every replica). One entry carries a batch of
// commands: the per-entry costs (log write, replication, apply bookkeeping) are then paid once per
// batch rather than once per command, which is what the write throughput hinges on.
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

/** Commands in one log entry, and the entry's encoded size: bounds what one apply may do. */
export const entryCommandsMax = 1_024;
export const entryBytesMax = 1 << 20;

const entrySchema = z.array(commandSchema).min(1).max(entryCommandsMax);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommands(cmds: Command[]): Uint8Array {
  if (cmds.length === 0 || cmds.length > entryCommandsMax) {
    throw new Error(`invariant: an entry carries 1-${entryCommandsMax} commands, not ${cmds.length}`);
  }
  return encoder.encode(JSON.stringify(cmds));
}

/** Decodes a committed entry; a malformed one is a replica bug, so this throws. */
export function decodeCommands(data: Uint8Array): Command[] {
  return entrySchema.parse(JSON.parse(decoder.decode(data)));
}
