// Owns the InventoryService gRPC handlers: request checks, turning requests into commands stamped
// with this (leader) replica's clock, and results into answers. Replication is behind InventoryReplica.
import type { Logger } from "pino";
import {
  type DeductRequest,
  type InventoryServiceServer,
  ReadConsistency,
  type RestockRequest,
  type SetReorderLevelRequest,
  type StockItem,
  type TransferRequest,
  type WriteCommand,
  type WriteOutcome,
} from "../gen/medisync/v1/inventory.ts";
import { AppError } from "../shared/errors.ts";
import { type CallContext, unary } from "../shared/grpc.ts";
import { inventoryLimits, isCalendarDate } from "../shared/validation.ts";
import { type Command, codeMax, quantityMax, requestIdMax } from "./commands.ts";
import type { InventoryReplica } from "./replica.ts";
import { type ApplyResult, type InventoryStateMachine, type Item, total } from "./state-machine.ts";

const { codePattern } = inventoryLimits;

function code(value: string, field: string): string {
  if (value.length === 0 || value.length > codeMax || !codePattern.test(value)) {
    throw new AppError("VALIDATION", `${field} must be 1-${codeMax} of [A-Za-z0-9_.:-]`, field);
  }
  return value;
}

function quantity(value: number, field: string, min = 1): number {
  if (!Number.isInteger(value) || value < min || value > quantityMax) {
    throw new AppError("VALIDATION", `${field} must be an integer from ${min} to ${quantityMax}`, field);
  }
  return value;
}

function requestId(value: string): string {
  if (value.length === 0 || value.length > requestIdMax) {
    throw new AppError("VALIDATION", `requestId must be 1-${requestIdMax} characters`, "requestId");
  }
  return value;
}

function expiresOn(value: string): string | undefined {
  if (value === "") return undefined;
  if (!isCalendarDate(value)) {
    throw new AppError("VALIDATION", "expiresOn must be a calendar date YYYY-MM-DD", "expiresOn");
  }
  return value;
}

function answer(r: ApplyResult): { quantity: number; index: number } {
  if (r.ok) return { quantity: r.quantity, index: r.index };
  if (r.code === "INSUFFICIENT_STOCK") {
    throw new AppError("INSUFFICIENT_STOCK", `only ${r.available} available`, "quantity", {
      available: String(r.available),
    });
  }
  throw new AppError("VALIDATION", r.reason);
}

function toItem(clinicId: string, medicationCode: string, item: Item | undefined): StockItem {
  return {
    clinicId,
    medicationCode,
    quantity: item ? total(item) : 0,
    reorderLevel: item?.reorderLevel ?? 0,
    lots: (item?.lots ?? []).map((l) => ({ lot: l.lot, quantity: l.quantity, expiresOn: l.expiresOn ?? "" })),
  };
}

/** Commands in one SubmitBatch call: bounds the work (and the memory) one call can ask for. */
export const { batchCommandsMax } = inventoryLimits;

type WriteAnswer = { quantity: number; index: number };

export function createInventoryHandlers(
  replica: InventoryReplica,
  log: Logger,
  now: () => number = Date.now,
): InventoryServiceServer {
  const submit = async (cmd: Command) => answer(await replica.submit(cmd));
  const read = async <T>(consistency: ReadConsistency, fn: (sm: InventoryStateMachine) => T) =>
    consistency === ReadConsistency.READ_CONSISTENCY_STALE
      ? replica.staleRead(fn)
      : replica.linearizableRead(fn);

  // One function per write, shared by the single calls and SubmitBatch: same checks, same answers.
  const restock = async (req: RestockRequest): Promise<WriteAnswer> =>
    submit({
      type: "restock",
      requestId: requestId(req.requestId),
      ts: now(),
      clinicId: code(req.clinicId, "clinicId"),
      medicationCode: code(req.medicationCode, "medicationCode"),
      quantity: quantity(req.quantity, "quantity"),
      ...(req.lot ? { lot: code(req.lot, "lot") } : {}),
      ...(req.expiresOn ? { expiresOn: expiresOn(req.expiresOn) } : {}),
    });
  const deduct = async (req: DeductRequest): Promise<WriteAnswer> =>
    submit({
      type: "deduct",
      requestId: requestId(req.requestId),
      ts: now(),
      clinicId: code(req.clinicId, "clinicId"),
      medicationCode: code(req.medicationCode, "medicationCode"),
      quantity: quantity(req.quantity, "quantity"),
    });
  const transfer = async (req: TransferRequest): Promise<WriteAnswer> => {
    const from = code(req.fromClinicId, "fromClinicId");
    const to = code(req.toClinicId, "toClinicId");
    if (from === to)
      throw new AppError("VALIDATION", "toClinicId must differ from fromClinicId", "toClinicId");
    return submit({
      type: "transfer",
      requestId: requestId(req.requestId),
      ts: now(),
      fromClinicId: from,
      toClinicId: to,
      medicationCode: code(req.medicationCode, "medicationCode"),
      quantity: quantity(req.quantity, "quantity"),
    });
  };
  const setReorderLevel = async (req: SetReorderLevelRequest): Promise<WriteAnswer> =>
    submit({
      type: "setReorderLevel",
      requestId: requestId(req.requestId),
      ts: now(),
      clinicId: code(req.clinicId, "clinicId"),
      medicationCode: code(req.medicationCode, "medicationCode"),
      level: quantity(req.level, "level", 0),
    });

  const one = async (c: WriteCommand, ctx: CallContext): Promise<WriteOutcome> => {
    try {
      let r: WriteAnswer;
      switch (c.command?.$case) {
        case "restock":
          r = await restock(c.command.value);
          break;
        case "deduct":
          r = await deduct(c.command.value);
          break;
        case "transfer":
          r = await transfer(c.command.value);
          break;
        case "setReorderLevel":
          r = await setReorderLevel(c.command.value);
          break;
        default:
          throw new AppError(
            "VALIDATION",
            "a command must be one of restock, deduct, transfer, setReorderLevel",
            "command",
          );
      }
      return {
        quantity: r.quantity,
        index: r.index,
        errorCode: "",
        errorMessage: "",
        errorField: "",
        errorMeta: {},
      };
    } catch (err) {
      const e = err instanceof AppError ? err : new AppError("INTERNAL", "internal error");
      if (e.code === "INTERNAL") ctx.log.error({ err }, "batched write failed");
      return {
        quantity: 0,
        index: 0,
        errorCode: e.code,
        errorMessage: e.message,
        errorField: e.field ?? "",
        errorMeta: e.meta,
      };
    }
  };

  return {
    restock: unary(log, "Restock", restock),
    deduct: unary(log, "Deduct", deduct),
    transfer: unary(log, "Transfer", transfer),
    setReorderLevel: unary(log, "SetReorderLevel", setReorderLevel),
    submitBatch: unary(log, "SubmitBatch", async (req, ctx) => {
      if (req.commands.length > batchCommandsMax) {
        throw new AppError("VALIDATION", `at most ${batchCommandsMax} commands per batch`, "commands");
      }
      return { outcomes: await Promise.all(req.commands.map((c) => one(c, ctx))) };
    }),
    getStock: unary(log, "GetStock", async (req) => {
      const clinicId = code(req.clinicId, "clinicId");
      const medicationCode = code(req.medicationCode, "medicationCode");
      const r = await read(req.consistency, (sm) =>
        toItem(clinicId, medicationCode, sm.item(clinicId, medicationCode)),
      );
      return { item: r.value, index: r.index };
    }),
    listStock: unary(log, "ListStock", async (req) => {
      const clinicId = code(req.clinicId, "clinicId");
      const r = await read(req.consistency, (sm) =>
        sm.items(clinicId).map(([m, item]) => toItem(clinicId, m, item)),
      );
      return { items: r.value, index: r.index };
    }),
    status: unary(log, "Status", async () => replica.status()),
  };
}
