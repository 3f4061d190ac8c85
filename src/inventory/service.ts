// Owns the InventoryService gRPC handlers: request checks, turning requests into commands stamped
// with this (leader) replica's clock, and results into answers. Replication is behind InventoryReplica.
import type { Logger } from "pino";
import {
  type DeductRequest,
  type InventoryServiceServer,
  type Lot as LotMessage,
  ReadConsistency,
  type RestockRequest,
  type ReturnStockRequest,
  type SetClinicTimeZoneRequest,
  type SetReorderLevelRequest,
  type StockItem,
  type SubmitBatchRequest,
  type SubmitBatchResponse,
  type SubmitStreamRequest,
  type SubmitStreamResponse,
  type TransferRequest,
  type WriteCommand,
  type WriteOutcome,
} from "../gen/medisync/v1/inventory.ts";
import { callStreamHandler, OpenStreams } from "../shared/call-stream.ts";
import { AppError, noWireError, toWireError } from "../shared/errors.ts";
import { type CallContext, handlerRunner, unary } from "../shared/grpc.ts";
import { decodeKeyPosition, pageLimit, pageOfHeld } from "../shared/keyset-page.ts";
import { counter } from "../shared/metrics.ts";
import {
  calendarDateRule,
  idempotencyKeyPattern,
  inventoryLimits,
  isCalendarDate,
  isTimeZone,
} from "../shared/validation.ts";
import { type Command, codeMax, quantityMax, requestIdMax, returnLotsMax } from "./commands.ts";
import type { InventoryReplica } from "./replica.ts";
import { type ApplyResult, type InventoryStateMachine, type Item, type Lot, total } from "./state-machine.ts";

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
  // The gateway's Idempotency-Key rule: ids without escapes keep the window's snapshot bounded.
  if (!idempotencyKeyPattern.test(value)) {
    throw new AppError("VALIDATION", `requestId must be 1-${requestIdMax} of [A-Za-z0-9_.:-]`, "requestId");
  }
  return value;
}

function expiresOn(value: string, field = "expiresOn"): string | undefined {
  if (value === "") return undefined;
  if (!isCalendarDate(value)) {
    throw new AppError("VALIDATION", `${field} must be ${calendarDateRule}`, field);
  }
  return value;
}

/** A return's lots, each checked as a restock's fields are and named by its place (lots[2].lot). */
function returnedLots(lots: LotMessage[]): { lot: string; quantity: number; expiresOn?: string }[] {
  if (lots.length === 0 || lots.length > returnLotsMax) {
    throw new AppError("VALIDATION", `lots must hold 1 to ${returnLotsMax} lots`, "lots");
  }
  return lots.map((l, i) => {
    const lot = code(l.lot, `lots[${i}].lot`);
    const n = quantity(l.quantity, `lots[${i}].quantity`);
    const expiry = expiresOn(l.expiresOn, `lots[${i}].expiresOn`);
    return expiry === undefined ? { lot, quantity: n } : { lot, quantity: n, expiresOn: expiry };
  });
}

/** Lots as the wire has them: expiresOn "" when the lot never expires. */
const toLotMessages = (lots: Lot[] | undefined): LotMessage[] =>
  (lots ?? []).map((l) => ({ lot: l.lot, quantity: l.quantity, expiresOn: l.expiresOn ?? "" }));

const windowFull = counter(
  "medisync_inventory_idempotency_window_full_total",
  "writes refused because the idempotency window holds INVENTORY_IDEMPOTENCY_IDS_MAX ids",
  [],
);

/** When the last window-full line was logged, and the refusals since. */
const windowFullLog = { atMs: 0, refused: 0 };

function answer(r: ApplyResult, log: Logger): WriteAnswer {
  if (r.ok)
    return {
      quantity: r.quantity,
      index: r.index,
      replayed: r.replayed === true,
      lots: toLotMessages(r.lots),
    };
  switch (r.code) {
    case "INSUFFICIENT_STOCK":
      throw new AppError("INSUFFICIENT_STOCK", `only ${r.available} available`, "quantity", {
        available: String(r.available),
      });
    case "IDEMPOTENCY_KEY_REUSED":
      throw new AppError(
        "IDEMPOTENCY_KEY_REUSED",
        "this request id was already used for a different command",
        "requestId",
      );
    case "IDEMPOTENCY_WINDOW_FULL": {
      windowFull.inc();
      const retryAfterS = Math.ceil(r.retryAfterMs / 1000);
      windowFullLog.refused++;
      // One line a second at most: when the window is full every new write is refused.
      if (Date.now() - windowFullLog.atMs >= 1_000) {
        log.warn(
          { event: "idempotency_window_full", retryAfterS, refused: windowFullLog.refused },
          "idempotency window full: refusing new writes until the oldest request ids leave it",
        );
        windowFullLog.atMs = Date.now();
        windowFullLog.refused = 0;
      }
      throw new AppError(
        "IDEMPOTENCY_WINDOW_FULL",
        `the idempotency window is full; retry after ${retryAfterS} s`,
        undefined,
        { "retry-after": String(retryAfterS) },
      );
    }
    case "LOT_EXPIRED":
      throw new AppError("LOT_EXPIRED", "expiresOn is before today in the clinic's time zone", "expiresOn");
    case "INVALID":
      throw new AppError("VALIDATION", r.reason);
  }
}

function toItem(clinicId: string, medicationCode: string, item: Item | undefined): StockItem {
  return {
    clinicId,
    medicationCode,
    quantity: item ? total(item) : 0,
    reorderLevel: item?.reorderLevel ?? 0,
    lots: toLotMessages(item?.lots),
  };
}

/** One write's answer; lots only for a deduct (what it took) or a return (what it put back). */
type WriteAnswer = { quantity: number; index: number; replayed: boolean; lots: LotMessage[] };

/** Commands in one SubmitBatch call: bounds the work (and the memory) one call can ask for. */
export const { batchCommandsMax } = inventoryLimits;

export function createInventoryHandlers(
  replica: InventoryReplica,
  log: Logger,
  now: () => number = Date.now,
  /** Where SubmitStream's streams are kept, for the server to drain them before it shuts down. */
  streams: OpenStreams = new OpenStreams(),
): InventoryServiceServer {
  // The call's own logger carries its request id.
  const submit = async (cmd: Command, ctx: CallContext) => answer(await replica.submit(cmd), ctx.log);
  const read = async <T>(consistency: ReadConsistency, fn: (sm: InventoryStateMachine) => T) =>
    consistency === ReadConsistency.READ_CONSISTENCY_STALE
      ? replica.staleRead(fn)
      : replica.linearizableRead(fn);

  // One function per write, shared by the single calls and SubmitBatch: same checks, same answers.
  const restock = async (req: RestockRequest, ctx: CallContext): Promise<WriteAnswer> =>
    submit(
      {
        type: "restock",
        requestId: requestId(req.requestId),
        ts: now(),
        clinicId: code(req.clinicId, "clinicId"),
        medicationCode: code(req.medicationCode, "medicationCode"),
        quantity: quantity(req.quantity, "quantity"),
        ...(req.lot ? { lot: code(req.lot, "lot") } : {}),
        ...(req.expiresOn ? { expiresOn: expiresOn(req.expiresOn) } : {}),
      },
      ctx,
    );
  const deduct = async (req: DeductRequest, ctx: CallContext): Promise<WriteAnswer> =>
    submit(
      {
        type: "deduct",
        requestId: requestId(req.requestId),
        ts: now(),
        clinicId: code(req.clinicId, "clinicId"),
        medicationCode: code(req.medicationCode, "medicationCode"),
        quantity: quantity(req.quantity, "quantity"),
      },
      ctx,
    );
  const transfer = async (req: TransferRequest, ctx: CallContext): Promise<WriteAnswer> => {
    const from = code(req.fromClinicId, "fromClinicId");
    const to = code(req.toClinicId, "toClinicId");
    if (from === to)
      throw new AppError("VALIDATION", "toClinicId must differ from fromClinicId", "toClinicId");
    return submit(
      {
        type: "transfer",
        requestId: requestId(req.requestId),
        ts: now(),
        fromClinicId: from,
        toClinicId: to,
        medicationCode: code(req.medicationCode, "medicationCode"),
        quantity: quantity(req.quantity, "quantity"),
      },
      ctx,
    );
  };
  const setReorderLevel = async (req: SetReorderLevelRequest, ctx: CallContext): Promise<WriteAnswer> =>
    submit(
      {
        type: "setReorderLevel",
        requestId: requestId(req.requestId),
        ts: now(),
        clinicId: code(req.clinicId, "clinicId"),
        medicationCode: code(req.medicationCode, "medicationCode"),
        level: quantity(req.level, "level", 0),
      },
      ctx,
    );

  const setClinicTimeZone = async (req: SetClinicTimeZoneRequest, ctx: CallContext): Promise<WriteAnswer> => {
    if (!isTimeZone(req.timeZone))
      throw new AppError("VALIDATION", "timeZone must be an IANA time zone name", "timeZone");
    return submit(
      {
        type: "setClinicTimeZone",
        requestId: requestId(req.requestId),
        ts: now(),
        clinicId: code(req.clinicId, "clinicId"),
        timeZone: req.timeZone,
      },
      ctx,
    );
  };

  const returnStock = async (req: ReturnStockRequest, ctx: CallContext): Promise<WriteAnswer> =>
    submit(
      {
        type: "returnStock",
        requestId: requestId(req.requestId),
        ts: now(),
        clinicId: code(req.clinicId, "clinicId"),
        medicationCode: code(req.medicationCode, "medicationCode"),
        lots: returnedLots(req.lots),
      },
      ctx,
    );

  const one = async (c: WriteCommand, ctx: CallContext): Promise<WriteOutcome> => {
    try {
      let r: WriteAnswer;
      switch (c.command?.$case) {
        case "restock":
          r = await restock(c.command.value, ctx);
          break;
        case "deduct":
          r = await deduct(c.command.value, ctx);
          break;
        case "transfer":
          r = await transfer(c.command.value, ctx);
          break;
        case "setReorderLevel":
          r = await setReorderLevel(c.command.value, ctx);
          break;
        case "setClinicTimeZone":
          r = await setClinicTimeZone(c.command.value, ctx);
          break;
        case "returnStock":
          r = await returnStock(c.command.value, ctx);
          break;
        default:
          throw new AppError(
            "VALIDATION",
            "a command must be one of restock, deduct, transfer, setReorderLevel, setClinicTimeZone, returnStock",
            "command",
          );
      }
      return {
        quantity: r.quantity,
        index: r.index,
        replayed: r.replayed,
        lots: r.lots,
        ...noWireError,
      };
    } catch (err) {
      const e = err instanceof AppError ? err : new AppError("INTERNAL", "internal error");
      if (e.code === "INTERNAL") ctx.log.error({ err }, "batched write failed");
      return { quantity: 0, index: 0, replayed: false, lots: [], ...toWireError(e) };
    }
  };

  const submitBatch = async (req: SubmitBatchRequest, ctx: CallContext): Promise<SubmitBatchResponse> => {
    if (req.commands.length > batchCommandsMax) {
      throw new AppError("VALIDATION", `at most ${batchCommandsMax} commands per batch`, "commands");
    }
    return { outcomes: await Promise.all(req.commands.map((c) => one(c, ctx))) };
  };

  return {
    restock: unary(log, "Restock", restock),
    deduct: unary(log, "Deduct", deduct),
    transfer: unary(log, "Transfer", transfer),
    setReorderLevel: unary(log, "SetReorderLevel", setReorderLevel),
    returnStock: unary(log, "ReturnStock", returnStock),
    submitBatch: unary(log, "SubmitBatch", submitBatch),
    submitStream: callStreamHandler<
      SubmitStreamRequest,
      SubmitBatchRequest,
      SubmitBatchResponse,
      SubmitStreamResponse
    >({
      read: (f: SubmitStreamRequest) => ({
        id: f.id,
        requestId: f.requestId,
        request: f.batch ?? { commands: [] },
      }),
      run: handlerRunner(log, "SubmitBatch", submitBatch),
      answer: (id, r): SubmitStreamResponse =>
        "res" in r ? { id, batch: r.res, ...noWireError } : { id, batch: undefined, ...toWireError(r.err) },
      streams,
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
      const size = pageLimit(req.pageSize, inventoryLimits);
      const after = decodeKeyPosition(req.pageToken, inventoryLimits);
      // Keyset by medication code (unique in a clinic): a page starts strictly after the last code
      // of the one before, so lines added or emptied between pages neither repeat nor shift the walk.
      // The lines are copied inside the read: the state's items change with the next entry applied.
      const r = await read(req.consistency, (sm) => {
        const { page, nextPageToken } = pageOfHeld(
          sm.items(clinicId),
          ([m]) => ({ key: m, id: "" }),
          after,
          size,
        );
        return { items: page.map(([m, item]) => toItem(clinicId, m, item)), nextPageToken };
      });
      return { ...r.value, index: r.index };
    }),
    status: unary(log, "Status", async () => replica.status()),
  };
}
