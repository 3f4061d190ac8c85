// Owns the checks on a request's raw bytes that must run before the generated decoder: ts-proto
// decodes int64 fields to JS numbers and throws past 2^53, which grpc-js would answer as INTERNAL.
// Here a request that does not decode becomes a VALIDATION error naming the field, answered by the
// handler wrapper (shared/grpc.ts unary) like any other bad input.
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { InventoryAdminServiceService, InventoryServiceService } from "../gen/medisync/v1/inventory.ts";
import { AppError } from "../shared/errors.ts";
import { UndecodableRequest } from "../shared/grpc.ts";
import { inventoryLimits } from "../shared/validation.ts";

/**
 * Where a message's int64 fields are, by field number: a name, or for a repeated message field its
 * name and its own int64 fields (ReturnStock's lots[i].quantity).
 */
interface Int64Fields {
  [no: number]: string | { repeated: string; fields: Int64Fields };
}

const lotFields: Int64Fields = { 2: "quantity" };
/** The int64 fields of each write request, by field number (inventory.proto). */
const int64Fields: Record<string, Int64Fields> = {
  restock: { 4: "quantity" },
  deduct: { 4: "quantity" },
  transfer: { 5: "quantity" },
  setReorderLevel: { 4: "level" },
  setClinicTimeZone: {},
  returnStock: { 4: { repeated: "lots", fields: lotFields } },
};
/** WriteCommand's oneof cases by field number. */
const commandCases: Record<number, string> = {
  1: "restock",
  2: "deduct",
  3: "transfer",
  4: "setReorderLevel",
  5: "setClinicTimeZone",
  6: "returnStock",
};

const safe = (v: bigint | string) => {
  const n = BigInt(v);
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER);
};

/** The first int64 field of a write request outside the safe range, as its path; undefined if none. */
function unsafeInt64(bytes: Uint8Array, fields: Int64Fields): string | undefined {
  const r = new BinaryReader(bytes);
  /** Occurrences of each repeated message field so far: lots[i] names the i-th. */
  const seen: Record<number, number> = {};
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    const f = fields[no];
    if (typeof f === "string" && wt === WireType.Varint) {
      if (!safe(r.int64())) return f;
    } else if (typeof f === "object" && wt === WireType.LengthDelimited) {
      const i = seen[no] ?? 0;
      seen[no] = i + 1;
      const inner = unsafeInt64(r.bytes(), f.fields);
      if (inner) return `${f.repeated}[${i}].${inner}`;
    } else r.skip(wt, no);
  }
  return undefined;
}

function unsafeInBatch(bytes: Uint8Array): string | undefined {
  const r = new BinaryReader(bytes);
  let i = 0;
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1 || wt !== WireType.LengthDelimited) {
      r.skip(wt, no);
      continue;
    }
    const cmd = new BinaryReader(r.bytes());
    while (cmd.pos < cmd.len) {
      const [cno, cwt] = cmd.tag();
      const kind = commandCases[cno];
      if (kind !== undefined && cwt === WireType.LengthDelimited) {
        const field = unsafeInt64(cmd.bytes(), int64Fields[kind]!);
        if (field) return `commands[${i}].${kind}.${field}`;
      } else cmd.skip(cwt, cno);
    }
    i++;
  }
  return undefined;
}

function whyUndecodable(method: string, bytes: Uint8Array): AppError {
  const { quantityMax } = inventoryLimits;
  try {
    const key = method.charAt(0).toLowerCase() + method.slice(1);
    const field =
      key === "submitBatch" ? unsafeInBatch(bytes) : int64Fields[key] && unsafeInt64(bytes, int64Fields[key]);
    if (field)
      return new AppError("VALIDATION", `${field} must be an integer from 0 to ${quantityMax}`, field);
  } catch {
    // Not even well-formed protobuf: say so below.
  }
  return new AppError("VALIDATION", "the request is not a valid protobuf message", "body");
}

/**
 * A SubmitStream frame that does not decode keeps its id (and its batch's bytes, to name the bad
 * field): that call alone is answered with the error, as a unary SubmitBatch would be.
 */
function undecodableFrame(bytes: Uint8Array): { id: number; requestId: string; batch: UndecodableRequest } {
  // Without an id (not even that decodes) no call can be answered: the caller's ends at its deadline.
  let id = 0;
  let requestId = "";
  let batch: Uint8Array = new Uint8Array();
  try {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no === 1 && wt === WireType.Varint) id = Number(r.uint64());
      else if (no === 2 && wt === WireType.LengthDelimited) requestId = r.string();
      else if (no === 3 && wt === WireType.LengthDelimited) batch = r.bytes();
      else r.skip(wt, no);
    }
  } catch {
    // Not even well-formed protobuf: the batch's bytes say so below.
  }
  // The request id is checked where every request's is (grpc.ts handlerRunner sanitizes it).
  return { id, requestId, batch: new UndecodableRequest(whyUndecodable("SubmitBatch", batch)) };
}

/** A service definition with every request decoder guarded: bad bytes reach the handler as a value. */
function guarded<S extends object>(service: S): S {
  return Object.fromEntries(
    Object.entries(service).map(([name, def]) => {
      const decode = def.requestDeserialize as (b: Buffer) => unknown;
      const method = (def.path as string).split("/").pop()!;
      const undecodable =
        method === "SubmitStream"
          ? undecodableFrame
          : (b: Buffer) => new UndecodableRequest(whyUndecodable(method, b));
      return [
        name,
        {
          ...def,
          requestDeserialize: (b: Buffer) => {
            try {
              return decode(b);
            } catch {
              return undecodable(b);
            }
          },
        },
      ];
    }),
  ) as unknown as S;
}

export const guardedInventoryService = guarded(InventoryServiceService);
/** The admin service's requests carry no int64 fields: bad bytes are "not a valid protobuf message". */
export const guardedAdminService = guarded(InventoryAdminServiceService);
