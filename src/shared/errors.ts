// Owns errors: domain errors are values with a stable code, and this is the one place that maps a
// code to a gRPC status, an HTTP status and a problem+json type. Services throw AppError; the gRPC
// helpers carry the code across the wire in trailing metadata, or in a message's error fields where
// one call answers many (toWireError: a batch's outcomes, a call stream's answers); the gateway turns
// it into a problem.
import { status as GrpcStatus, Metadata, type ServiceError } from "@grpc/grpc-js";

export const PROBLEM_BASE = "https://medisync.dev/problems/";

interface CodeSpec {
  grpc: GrpcStatus;
  http: number;
  title: string;
}

export const errorCodes = {
  VALIDATION: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, title: "Request is invalid" },
  MALFORMED_JSON: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, title: "Body is not valid JSON" },
  UNSUPPORTED_MEDIA_TYPE: {
    grpc: GrpcStatus.INVALID_ARGUMENT,
    http: 415,
    title: "Body must be application/json",
  },
  PAYLOAD_TOO_LARGE: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 413, title: "Body is too large" },
  UNAUTHENTICATED: {
    grpc: GrpcStatus.UNAUTHENTICATED,
    http: 401,
    title: "A valid bearer token is required",
  },
  FORBIDDEN: {
    grpc: GrpcStatus.PERMISSION_DENIED,
    http: 403,
    title: "The token does not allow this",
  },
  ROUTE_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "No such route" },
  METHOD_NOT_ALLOWED: { grpc: GrpcStatus.UNIMPLEMENTED, http: 405, title: "Method not allowed" },
  CLINIC_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Clinic not found" },
  PRACTITIONER_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Practitioner not found" },
  SLOT_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Slot not found" },
  APPOINTMENT_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Appointment not found" },
  SLOT_TAKEN: { grpc: GrpcStatus.ALREADY_EXISTS, http: 409, title: "Slot is already booked" },
  SLOT_OVERLAP: { grpc: GrpcStatus.ALREADY_EXISTS, http: 409, title: "Slots overlap existing slots" },
  ALREADY_CANCELLED: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 409,
    title: "Already cancelled",
  },
  PRESCRIPTION_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Prescription not found" },
  WEBHOOK_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Webhook not found" },
  DELIVERY_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "Webhook delivery not found" },
  CONTACTS_DISABLED: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 503,
    title: "Patient contacts are off: the notification service has no NOTIFICATION_CONTACT_KEY",
  },
  APPOINTMENT_NOT_BOOKED: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 409,
    title: "The appointment is not booked (cancelled)",
  },
  DISPENSE_UNSETTLED: {
    grpc: GrpcStatus.UNAVAILABLE,
    http: 503,
    title: "The dispense is not settled yet; retry with the same Idempotency-Key",
  },
  IDEMPOTENCY_KEY_REUSED: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 422,
    title: "Idempotency key was used for a different request",
  },
  IDEMPOTENCY_WINDOW_FULL: {
    grpc: GrpcStatus.RESOURCE_EXHAUSTED,
    http: 503,
    title: "Too many request ids remembered; new writes wait until the oldest leave the window",
  },
  OVERLOADED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 503, title: "Too many requests waiting" },
  /** A principal or an address over its per-minute budget (src/gateway/rate-limit.ts); Retry-After says when. */
  RATE_LIMITED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429, title: "Too many requests" },
  LOT_EXPIRED: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 422, title: "Lot is already expired" },
  SLOT_IN_PAST: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 422, title: "Slot is in the past" },
  NOT_LEADER: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 503, title: "Replica is not the leader" },
  INSUFFICIENT_STOCK: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, title: "Not enough stock" },
  UNAVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503, title: "Service unavailable" },
  MEMBER_NOT_FOUND: { grpc: GrpcStatus.NOT_FOUND, http: 404, title: "No such cluster member" },
  MEMBER_EXISTS: { grpc: GrpcStatus.ALREADY_EXISTS, http: 409, title: "Already a cluster member" },
  CONF_CHANGE_PENDING: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 409,
    title: "Another membership change is in flight; retry once it is applied",
  },
  LEARNER_NOT_CAUGHT_UP: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 409,
    title: "The learner is behind the commit index; promote it once caught up",
  },
  LAST_VOTER: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, title: "The last voter cannot be removed" },
  REMOVE_LEADER: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 409,
    title: "The leader cannot remove itself; transfer leadership first",
  },
  TRANSFER_INVALID: {
    grpc: GrpcStatus.FAILED_PRECONDITION,
    http: 422,
    title: "Leadership can only go to another voter",
  },
  DEADLINE_EXCEEDED: { grpc: GrpcStatus.DEADLINE_EXCEEDED, http: 504, title: "Upstream deadline exceeded" },
  INTERNAL: { grpc: GrpcStatus.INTERNAL, http: 500, title: "Internal error" },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof errorCodes;

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
    readonly meta: Record<string, string> = {},
  ) {
    super(message);
    this.name = "AppError";
  }
}

export function isErrorCode(x: string): x is ErrorCode {
  return Object.hasOwn(errorCodes, x);
}

/** The problem type URI of a code, e.g. SLOT_TAKEN → …/slot-taken. Stable: clients match on it. */
export function problemType(code: ErrorCode): string {
  return PROBLEM_BASE + code.toLowerCase().replaceAll("_", "-");
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  field?: string;
  errors?: { field: string; message: string }[];
  requestId?: string;
  /** Bookings: the Idempotency-Key the request was tried with, so a retry can use it. */
  idempotencyKey?: string;
  /** Prescriptions declined or not settled yet: the one on record (GET /v1/prescriptions/{id}). */
  prescriptionId?: string;
}

export function toProblem(err: AppError, extra: Partial<Problem> = {}): Problem {
  const spec = errorCodes[err.code];
  const problem: Problem = {
    type: problemType(err.code),
    title: spec.title,
    status: spec.http,
    detail: err.message,
    code: err.code,
    ...extra,
  };
  if (err.field !== undefined) problem.field = err.field;
  if (err.meta.prescriptionid) problem.prescriptionId = err.meta.prescriptionid;
  return problem;
}

const CODE_KEY = "medisync-code";
const FIELD_KEY = "medisync-field";
const META_PREFIX = "medisync-meta-";

/** Socket failures: the dependency's process went away or is not listening (yet). */
const socketCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);
/**
 * PostgreSQL SQLSTATEs that mean "the database is not there right now", not "the request is wrong":
 * class 08 (connection exception), admin/crash shutdown and "starting up" (57P01-57P03), too many
 * connections (53300), and a statement cancelled by statement_timeout (57014).
 */
const unavailableSqlStates = /^(08...|57P0[123]|53300|57014)$/;
/** pg's own messages for a connection that died or never came (it sets no code on these). */
const unavailableMessages =
  /^(Connection terminated|Connection terminated unexpectedly|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Query read timeout|connection timeout)/;

/**
 * A dependency (PostgreSQL, a socket) that is down or too slow, as the 503 a caller may retry after
 * `Retry-After`; undefined for anything else. Duck-typed on `code` and `message`, so this module
 * needs no database driver.
 */
export function unavailableError(err: unknown): AppError | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  const message = (err as { message?: unknown }).message;
  const down =
    (typeof code === "string" && (socketCodes.has(code) || unavailableSqlStates.test(code))) ||
    (typeof message === "string" && unavailableMessages.test(message));
  if (!down) return undefined;
  const what = code === "57014" ? "database statement timed out" : "database unavailable";
  return new AppError("UNAVAILABLE", `${what}; retry later`, undefined, { "retry-after": "1" });
}

/** Any thrown value as an AppError: ours as is, a dependency outage as UNAVAILABLE, the rest INTERNAL. */
export function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  return unavailableError(err) ?? new AppError("INTERNAL", "internal error");
}

/**
 * An error thrown in a gRPC handler, as the ServiceError grpc-js sends. A dependency outage becomes
 * UNAVAILABLE; other unknown errors become INTERNAL.
 */
export function toGrpcError(err: unknown): Partial<ServiceError> {
  const app = asAppError(err);
  const metadata = new Metadata();
  metadata.set(CODE_KEY, app.code);
  if (app.field !== undefined) metadata.set(FIELD_KEY, app.field);
  for (const [k, v] of Object.entries(app.meta)) metadata.set(META_PREFIX + k.toLowerCase(), v);
  return { code: errorCodes[app.code].grpc, details: app.message, metadata };
}

/** The AppError behind a failed gRPC call: ours when the server sent a code, else from the status. */
export function fromGrpcError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const e = err as Partial<ServiceError>;
  const md = e.metadata;
  const code = md?.get(CODE_KEY)[0];
  if (typeof code === "string" && isErrorCode(code)) {
    const field = md?.get(FIELD_KEY)[0];
    const meta: Record<string, string> = {};
    for (const [k, v] of Object.entries(md?.getMap() ?? {})) {
      if (k.startsWith(META_PREFIX)) meta[k.slice(META_PREFIX.length)] = String(v);
    }
    return new AppError(code, e.details ?? code, typeof field === "string" ? field : undefined, meta);
  }
  switch (e.code) {
    case GrpcStatus.UNAVAILABLE:
      return new AppError("UNAVAILABLE", "upstream service unavailable");
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new AppError("DEADLINE_EXCEEDED", "upstream deadline exceeded");
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return new AppError("UNAVAILABLE", "upstream overloaded");
    default:
      return new AppError("INTERNAL", "upstream error");
  }
}

/**
 * An error as the fields a message carries when one gRPC call answers many (a SubmitBatch outcome,
 * a SubmitStream answer): errorCode "" means no error. Read back by fromWireError.
 */
export interface WireError {
  errorCode: string;
  errorMessage: string;
  errorField: string;
  errorMeta: { [key: string]: string };
}

export const noWireError: WireError = Object.freeze({
  errorCode: "",
  errorMessage: "",
  errorField: "",
  errorMeta: Object.freeze({}) as { [key: string]: string },
});

/** Any thrown value (asAppError) as a message's error fields. */
export function toWireError(err: unknown): WireError {
  const app = asAppError(err);
  return { errorCode: app.code, errorMessage: app.message, errorField: app.field ?? "", errorMeta: app.meta };
}

/**
 * The AppError a message's error fields carry, undefined when they carry none. An unknown code (a
 * newer peer's) reads as INTERNAL; meta keys are lower-cased, as they are in gRPC metadata.
 */
export function fromWireError(w: WireError): AppError | undefined {
  if (w.errorCode === "") return undefined;
  const code = isErrorCode(w.errorCode) ? w.errorCode : "INTERNAL";
  const meta = Object.fromEntries(Object.entries(w.errorMeta).map(([k, v]) => [k.toLowerCase(), v]));
  return new AppError(code, w.errorMessage, w.errorField || undefined, meta);
}
