// Owns the shape rules every layer agrees on (calendar dates, UUIDs, instants, idempotency keys), as
// plain predicates, so the gateway's schemas and the services' own checks cannot drift apart.

const datePattern = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A real calendar date YYYY-MM-DD (2026-02-30 is not). */
export function isCalendarDate(s: string): boolean {
  const m = datePattern.exec(s);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1970 || y > 9999) return false;
  const dt = new Date(Date.UTC(y, mo - 1, d));
  return dt.getUTCFullYear() === y && dt.getUTCMonth() === mo - 1 && dt.getUTCDate() === d;
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return uuidPattern.test(s);
}

const instantPattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 date-time with an explicit offset that names a real instant. */
export function isInstant(s: string): boolean {
  if (!instantPattern.test(s) || !isCalendarDate(s.slice(0, 10))) return false;
  return !Number.isNaN(new Date(s).getTime());
}

/** Idempotency keys are echoed into logs and keys: short and harmless only. */
export const idempotencyKeyPattern = /^[A-Za-z0-9_.:-]{1,200}$/;

/**
 * The inventory contract's limits, shared by the gateway (REST schemas, batching) and the inventory
 * service (gRPC checks, command schema), which must not import each other.
 */
export const inventoryLimits = {
  /** Clinic ids, medication codes and lot names. */
  codeMax: 64,
  codePattern: /^[A-Za-z0-9_.:-]+$/,
  quantityMax: 1_000_000_000,
  requestIdMax: 200,
  /** Commands in one SubmitBatch call. */
  batchCommandsMax: 256,
  /** Commands in one Raft log entry (the replica packs what arrives together). */
  entryCommandsMax: 1_024,
} as const;
