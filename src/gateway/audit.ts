// Owns the audit trail: one append-only row per read of patient data and per write (FHIR
// AuditEvent's who, role, action, what, outcome, when, request id, source) in the gateway's own
// PostgreSQL database, and the pages GET /v1/audit reads them back in.
//
// A request the gateway admitted is written ahead: begin() queues its row (outcome pending) while the
// act runs, the answer waits for that row, and finish() appends the outcome to audit_outcomes
// without the answer waiting for it. So the audit's round trip overlaps the act instead of following
// it, and a gateway that dies mid-request leaves an attempt whose outcome is unknown, never an act
// with no row at all. A refused request, which does nothing, is recorded whole by record().
//
// Writes are group-committed: rows queue and resolve once committed; while one INSERT is in flight,
// rows that arrive wait and go together into the next one (up to batchRowsMax; events and outcomes
// in one statement), so the hot paths pay one INSERT per batch, not per request, and an event row
// on an idle log is sent at once (no timer). An outcome alone starts no INSERT: it waits for the
// next event row's, or outcomeLingerMs, so at low load a request costs one INSERT and one commit,
// not two. list() and close() first write what this gateway queued before them.
// A plain 200 (nothing created) gets no outcome row at all: one watermark row per INSERT answers for
// every settled request below it (Epoch), which halves the rows an audited request costs.
// Every row has a deadline (writeTimeoutMs from record()): PostgreSQL down or hung, record() rejects
// UNAVAILABLE within it, and a full queue (queueRowsMax) rejects OVERLOADED at once. Either way the
// caller decides what to answer. A rejected row is not known to be written; it may still be (the
// INSERT can commit after its deadline): the trail may hold a row its caller was told failed, never
// the other way round.
//
// Only ids go in: an id, source or route that is not id-shaped is stored as NULL, so no name or free
// text a client sent can land in the trail (or a log line) through it.
import { randomUUID } from "node:crypto";
import { isIP } from "node:net";
import type pg from "pg";
import type { Logger } from "pino";
import type { Config } from "../shared/config.ts";
import { AppError, unavailableError } from "../shared/errors.ts";
import { counter, histogram } from "../shared/metrics.ts";
import { createPool, ensureDatabase, withClient } from "../shared/pg.ts";
import { isRole, type Principal, type Role } from "../shared/principal.ts";
import { isUuid } from "../shared/validation.ts";
import { migrateAudit } from "./audit-migrations.ts";

// The vocabularies (actions, resource types) are the policy's: each audited route names its own there.
export {
  type AuditAction,
  type AuditResourceType,
  auditActions,
  auditResourceTypes,
} from "../shared/access-policy.ts";

import {
  type AuditAction,
  type AuditResourceType,
  auditActions,
  auditResourceTypes,
} from "../shared/access-policy.ts";

/** One event as the request pipeline hands it over. */
export interface AuditEntry {
  /** Who acted; undefined for an unauthenticated request. */
  actor: Principal | undefined;
  action: AuditAction;
  resourceType: AuditResourceType;
  /** The resource's id (an appointment id, a medication code…); NULL when not id-shaped. */
  resourceId?: string;
  /** The patient whose data it is; NULL unless a UUID. */
  patientId?: string;
  /** The clinic code (stock) or id the resource belongs to. */
  clinic?: string;
  /** The HTTP status the request was answered with. */
  outcome: number;
  requestId: string;
  /** The client's address (an IP address); NULL when it is not one. */
  source: string;
  /** The route's template, e.g. "POST /v1/appointments" or "GET /v1/appointments/{id}". */
  route: string;
}

/** An admitted request, recorded before its act: everything but the outcome. */
export type AuditAttemptEntry = Omit<AuditEntry, "outcome">;

/** A row written ahead of its act (AuditLog.begin). */
export interface AuditAttempt {
  /** Settles as record()'s promise does; the answer waits for it. */
  readonly written: Promise<void>;
  /**
   * Appends the outcome (and what a create made) once the row is written; never waited for, never
   * throws, once per attempt (later calls are ignored). A row whose outcome is lost reads back with
   * outcome undefined.
   */
  finish(outcome: number, resourceId?: string): void;
  /**
   * Set when the log refused the row at once (closed, or its queue full): the caller answers with it
   * before acting, so no act runs that could not be recorded.
   */
  readonly refused?: AppError;
}

/** One row read back. */
export interface AuditRecord {
  /** The row's id (a decimal bigint): the order rows were written in. */
  id: string;
  /** When PostgreSQL wrote the row (RFC 3339, UTC, microseconds). */
  recorded: string;
  /** When the gateway admitted (or refused) the request (RFC 3339, UTC, milliseconds). */
  occurred: string;
  actor: { sub: string; role: Role } | undefined;
  action: AuditAction;
  resourceType: string;
  resourceId: string | undefined;
  patientId: string | undefined;
  clinic: string | undefined;
  /** Undefined: the row was written ahead of its act and its outcome never arrived. */
  outcome: number | undefined;
  requestId: string | undefined;
  source: string | undefined;
  route: string | undefined;
}

export interface AuditPage {
  items: AuditRecord[];
  /** Where the next page starts; undefined on the last page. */
  nextCursor: string | undefined;
}

export const auditLimits = {
  pageLimitMax: 100,
  pageLimitDefault: 20,
  /** Characters of a page cursor (ours are ~30). */
  cursorMax: 64,
} as const;

export interface AuditLogOptions {
  pool: pg.Pool;
  log: Logger;
  /** Rows one INSERT carries at most. */
  batchRowsMax: number;
  /** Rows waiting for an INSERT (not counting the one in flight) at most; past it record() is OVERLOADED. */
  queueRowsMax: number;
  /** record() settles within this long of being called. */
  writeTimeoutMs: number;
  /** close() ends the pool too (openAuditLog's). */
  ownsPool?: boolean;
  /**
   * How long an outcome row with no event row queued beside it waits for one before it is sent
   * alone (default outcomeLingerMsDefault); below writeTimeoutMs.
   */
  outcomeLingerMs?: number;
  /** The gateway's clock (occurred_at); Date.now unless a test says otherwise. */
  now?: () => number;
}

/** Counts of what this instance did, for tests and the ops page (the metrics count the same, process-wide). */
export interface AuditStats {
  /** INSERT statements sent (each one batch). */
  inserts: number;
  /** Event rows (record() and begin()). */
  rowsWritten: number;
  /** Outcome rows (finish()). They are never refused as overloaded (see enqueue). */
  outcomesWritten: number;
  outcomesFailed: number;
  rowsFailed: number;
  rowsOverloaded: number;
  /** audit_answered rows (watermarks) committed. */
  answeredWritten: number;
  /** Writer ids this log has used (a new one after an attempt that can never be settled). */
  epochs: number;
  /** Rows waiting now (not counting the batch in flight). */
  queuedRows: number;
}

const rowsTotal = counter("medisync_audit_rows_total", "Audit rows by what became of them", ["result"]);
const outcomesTotal = counter(
  "medisync_audit_outcomes_total",
  "Audit outcome rows (appended after the act) by what became of them",
  ["result"],
);
const watermarksTotal = counter(
  "medisync_audit_watermarks_total",
  "Answered-200 watermark rows (one per INSERT at most; each stands for many plain outcomes) by result",
  ["result"],
);
const batchesTotal = counter("medisync_audit_batches_total", "Audit INSERTs (one per batch) by result", [
  "result",
]);
const batchRows = histogram(
  "medisync_audit_batch_rows",
  "Rows per audit INSERT",
  [],
  [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
);
const insertSeconds = histogram(
  "medisync_audit_insert_seconds",
  "Time one audit INSERT took, failed ones included",
  [],
  [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
);

/** Ids, clinic codes, medication codes: what may be stored as an id. Anything else is stored as NULL. */
const idPattern = /^[A-Za-z0-9._:/-]{1,200}$/;
const subPattern = /^[A-Za-z0-9._:@|/-]{1,200}$/;
const routePattern = /^[A-Z]{3,7} \/[A-Za-z0-9._/{}:-]{0,200}$/;
const sourceMax = 64;

const idOrNull = (s: string | undefined) => (s !== undefined && idPattern.test(s) ? s : null);

/**
 * An event row, named as the INSERT's JSON carries it (the columns' names): the batch's JSON is
 * the queued rows themselves, with no copy per row.
 */
interface Row {
  occurred_at: string;
  actor_sub: string | null;
  actor_role: Role | null;
  action: AuditAction;
  resource_type: AuditResourceType;
  resource_id: string | null;
  patient_id: string | null;
  clinic: string | null;
  /** Null: written ahead, the outcome follows in an outcome row naming `event`. */
  outcome: number | null;
  event: string | null;
  request_id: string | null;
  source: string | null;
  route: string | null;
  /** begin()'s rows: the writer (an epoch of this AuditLog) and the row's place in its order. */
  writer: string | null;
  seq: number | null;
}

interface OutcomeRow {
  event: string;
  outcome: number;
  resource_id: string | null;
}

/**
 * A queued row: an event row, an outcome row, or neither (a marker that a flush queues when only
 * plain answers wait: it carries them into an INSERT and is what list() waits for). A class, one
 * shape for every kind: this is allocated for every audited request, and building it by spreading an object literal measured
 * ~14 µs of CPU per request on Node 20 (exp in bench/reports/inventory.md, sixth look).
 */
class Pending {
  settled = false;
  /** list() calls waiting for this row (the newest queued when they came) to settle. */
  waiters: (() => void)[] | undefined = undefined;
  constructor(
    readonly row: Row | undefined,
    readonly outcomeRow: OutcomeRow | undefined,
    readonly deadline: number,
    readonly resolve: () => void,
    readonly reject: (err: AppError) => void,
    /** Set for begin()'s rows and their outcome rows: told when the row is written or failed. */
    readonly attempt: Attempt | undefined,
  ) {}
}

/**
 * A run of begin()'s rows under one writer id, and what is known of their outcomes. Most admitted
 * requests are answered 200 and create nothing: those get no outcome row of their own. Instead an
 * INSERT carries one audit_answered row (writer, upto), which says that every event of this writer
 * with seq ≤ upto and no row in audit_outcomes was answered 200 (the audit_trail view reads it so).
 * upto is only ever a seq below which every attempt is settled: its event row committed and its
 * outcome either a plain 200 or an outcome row that committed too. An attempt that can never be
 * settled so (its row or its outcome row failed: it may have landed after its deadline; or its
 * finish() is long overdue) holds upto below it for good, so the log starts a new epoch, a new
 * writer id, for the requests after it.
 */
class Epoch {
  readonly writer = randomUUID();
  /** Attempts not yet settled, by seq (begun in seq order, so the first is the oldest), with when they began. */
  readonly open = new Map<number, number>();
  /**
   * Answered plain 200 (row committed) and not yet below a committed watermark, by seq, in the
   * order they were answered (the first waited longest).
   */
  readonly plain = new Map<number, { event: string; answeredAt: number }>();
  /** No open seq is below this one. */
  private low: number;
  /** The upto of the last INSERT sent (firstSeq − 1: none, nothing of this epoch is below it). */
  sentUpto: number;
  /** The upto of the last INSERT that committed. */
  committedUpto: number;

  constructor(
    readonly firstSeq: number,
    private readonly nextSeq: () => number,
  ) {
    this.low = firstSeq;
    this.sentUpto = firstSeq - 1;
    this.committedUpto = firstSeq - 1;
  }

  /** Every attempt of this epoch with seq ≤ upto() is settled. */
  upto(): number {
    const next = this.nextSeq();
    while (this.low < next && !this.open.has(this.low)) this.low++;
    return this.low - 1;
  }

  /** When the oldest unsettled attempt began; undefined when none is open. */
  oldestOpenSince(): number | undefined {
    return this.open.values().next().value;
  }
}

/** An attempt whose finish() has not come in this long is a bug; its epoch is retired. */
const attemptOpenMsMax = 60_000;

const noop = () => undefined;

/** What an outcome must be: an HTTP status (the tables' CHECK says the same). */
const isHttpStatus = (n: number) => Number.isInteger(n) && n >= 100 && n <= 599;

/** The outcome a watermark stands for (audit_trail's view says 200 too: migration 3). */
const plainOutcome = 200;

/** An admitted request's row, written ahead of its act (AuditLog.begin). */
class Attempt implements AuditAttempt {
  written!: Promise<void>;
  private state: "pending" | "written" | "failed" | "finished" = "pending";
  /** finish() came before the row was written: its outcome, acted on once the row is in. */
  private early: OutcomeRow | "plain" | undefined = undefined;

  constructor(
    private readonly audit: AuditLog,
    readonly event: string,
    readonly epoch: Epoch,
    readonly seq: number,
  ) {}

  finish(outcome: number, resourceId?: string): void {
    if (this.state === "finished" || this.state === "failed") return;
    const was = this.state;
    this.state = "finished";
    if (!isHttpStatus(outcome)) {
      // A bug in the caller; the answer is not held up for it, the row keeps its outcome unknown.
      this.audit.badOutcome(this, outcome);
      return;
    }
    // After the row, never without it: an outcome (row or watermark) names an event in the trail.
    // Acted on at once when the row is in, so a list() right after sees it.
    const what: OutcomeRow | "plain" =
      outcome === plainOutcome && resourceId === undefined
        ? "plain"
        : { event: this.event, outcome, resource_id: idOrNull(resourceId) };
    if (was === "written") this.audit.answered(this, what);
    else this.early = what;
  }

  /** The writer's word on this attempt's row, once: written, or failed (then no outcome follows). */
  rowSettled(written: boolean): void {
    if (this.state === "pending") this.state = written ? "written" : "failed";
    const early = this.early;
    this.early = undefined;
    if (!written) this.audit.unsettled(this);
    else if (early !== undefined) this.audit.answered(this, early);
  }
}

// One JSON array of rows, unpacked by PostgreSQL: one statement text whatever the batch size,
// prepared once per connection, and one parameter that V8's JSON.stringify writes natively (twelve
// arrays cost pg's per-element escaping in JavaScript: most of the audit's CPU in the gateway).
// Events and outcomes in one statement: one round trip and one commit per batch, whichever it holds.
const insertSql = `
  WITH e AS (
    INSERT INTO audit_events (occurred_at, actor_sub, actor_role, action, resource_type, resource_id,
                              patient_id, clinic, outcome, event, request_id, source, route, writer, seq)
    SELECT r.occurred_at, r.actor_sub, r.actor_role, r.action, r.resource_type, r.resource_id,
           r.patient_id, r.clinic, r.outcome, r.event, r.request_id, r.source, r.route, r.writer, r.seq
    FROM jsonb_to_recordset($1::jsonb) AS r(occurred_at timestamptz, actor_sub text, actor_role text,
      action char(1), resource_type text, resource_id text, patient_id uuid, clinic text, outcome smallint,
      event uuid, request_id text, source text, route text, writer uuid, seq bigint)
  ), a AS (
    -- The answered-200 watermark (see Epoch), at most one per batch. Sent again after an INSERT
    -- that failed by its deadline but may still have committed: the first one stands.
    INSERT INTO audit_answered (writer, upto)
    SELECT $3::uuid, $4::bigint WHERE $4::bigint IS NOT NULL
    ON CONFLICT DO NOTHING
  )
  -- The outer statement an INSERT without RETURNING, so the answer has no rows: no row description
  -- for the driver to parse on every batch (pg's addFields was 8 % of the audit's CPU).
  INSERT INTO audit_outcomes (event, outcome, resource_id)
  SELECT r.event, r.outcome, r.resource_id
  FROM jsonb_to_recordset($2::jsonb) AS r(event uuid, outcome smallint, resource_id text)
  -- One event's outcome twice (finish() allows one, so only a bug) must not fail the other
  -- requests' rows in the batch; the first outcome stands.
  ON CONFLICT (event) DO NOTHING`;

const selectColumns = `id::text AS id,
  to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS recorded,
  to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS occurred,
  actor_sub, actor_role, action, resource_type, resource_id, patient_id::text AS patient_id, clinic,
  outcome, request_id, source, route`;

interface DbRow {
  id: string;
  recorded: string;
  occurred: string;
  actor_sub: string | null;
  actor_role: string | null;
  action: AuditAction;
  resource_type: string;
  resource_id: string | null;
  patient_id: string | null;
  clinic: string | null;
  outcome: number | null;
  request_id: string | null;
  source: string | null;
  route: string | null;
}

const bigintMax = 9223372036854775807n;

/** A page cursor: the id of the last row of the page before, opaque to the client. */
export function encodeAuditCursor(id: string): string {
  return Buffer.from(`a1:${id}`).toString("base64url");
}

/** The id a cursor names, or a VALIDATION naming `cursor`. */
export function decodeAuditCursor(cursor: string): string {
  if (cursor.length > 0 && cursor.length <= auditLimits.cursorMax && /^[A-Za-z0-9_-]+$/.test(cursor)) {
    const m = /^a1:([1-9][0-9]{0,18})$/.exec(Buffer.from(cursor, "base64url").toString("latin1"));
    if (m && BigInt(m[1]!) <= bigintMax) return m[1]!;
  }
  throw new AppError("VALIDATION", "cursor is not one this service gave out", "cursor");
}

/**
 * An outcome rides with the next request's row for up to this long. A gateway killed in that window
 * leaves those requests' outcomes unknown, as it would any outcome it had not yet sent.
 */
export const outcomeLingerMsDefault = 100;

export class AuditLog {
  private readonly pool: pg.Pool;
  private readonly log: Logger;
  private readonly batchRowsMax: number;
  private readonly queueRowsMax: number;
  private readonly writeTimeoutMs: number;
  private readonly ownsPool: boolean;
  private readonly now: () => number;
  private queue: Pending[] = [];
  private inFlight: Pending[] = [];
  private writing: Promise<void> | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private readonly outcomeLingerMs: number;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** Set by flush(): the writer sends outcome rows too, not only batches with an event row. */
  private flushAll = false;
  private closed = false;
  /** The next begin()'s seq; seqs run on across epochs. */
  private seqNext = 1;
  private readonly seqOf = () => this.seqNext;
  private epoch: Epoch = new Epoch(1, this.seqOf);
  /** Plain answers of retired epochs, waiting for rows of their own: their events. */
  private forcedPlain: string[] = [];
  /** After a failed INSERT, the linger does not flush again before this. */
  private retryAt = 0;
  /** Whether the last INSERT failed: failures are logged when they start and when they end, not per batch. */
  private failing = false;
  private readonly counts = {
    inserts: 0,
    rowsWritten: 0,
    outcomesWritten: 0,
    outcomesFailed: 0,
    rowsFailed: 0,
    rowsOverloaded: 0,
    answeredWritten: 0,
    epochs: 1,
  };

  constructor(o: AuditLogOptions) {
    if (!Number.isInteger(o.batchRowsMax) || o.batchRowsMax < 1) throw new Error("batchRowsMax must be ≥ 1");
    if (!Number.isInteger(o.queueRowsMax) || o.queueRowsMax < 1) throw new Error("queueRowsMax must be ≥ 1");
    this.pool = o.pool;
    this.log = o.log;
    this.batchRowsMax = o.batchRowsMax;
    this.queueRowsMax = o.queueRowsMax;
    this.writeTimeoutMs = o.writeTimeoutMs;
    this.ownsPool = o.ownsPool ?? false;
    this.now = o.now ?? Date.now;
    // Half the write timeout at most by default, so a short AUDIT_WRITE_TIMEOUT_MS stays valid.
    this.outcomeLingerMs =
      o.outcomeLingerMs ?? Math.min(outcomeLingerMsDefault, Math.floor(o.writeTimeoutMs / 2));
    if (!(this.outcomeLingerMs >= 0 && this.outcomeLingerMs < o.writeTimeoutMs))
      throw new Error("outcomeLingerMs must be ≥ 0 and below writeTimeoutMs");
  }

  /**
   * Appends one row; resolves once it is committed. Rejects OVERLOADED when queueRowsMax rows wait
   * already, UNAVAILABLE when PostgreSQL did not take it within writeTimeoutMs (or the log is
   * closed), INTERNAL for an action, resource type or outcome outside their lists (a bug in the caller).
   */
  record(entry: AuditEntry): Promise<void> {
    let row: Row;
    try {
      row = this.rowOf(entry, entry.outcome);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.enqueue(row, undefined, undefined);
  }

  /**
   * Writes an admitted request's row ahead of its act; `written` settles as record()'s promise does,
   * and finish() appends the outcome once it is written. Throws INTERNAL as record() rejects; a
   * full queue or a closed log is `refused` at once, before the caller acts.
   */
  begin(entry: AuditAttemptEntry): AuditAttempt {
    const row = this.rowOf(entry, null);
    const refused = this.refusal();
    if (refused) {
      const written = Promise.reject(refused);
      written.catch(() => undefined);
      return { written, refused, finish: () => undefined };
    }
    const seq = this.seqNext++;
    const epoch = this.epoch;
    epoch.open.set(seq, this.now());
    const attempt = new Attempt(this, randomUUID(), epoch, seq);
    row.event = attempt.event;
    row.writer = epoch.writer;
    row.seq = seq;
    attempt.written = this.enqueue(row, undefined, attempt);
    // Handled here, whether or not the caller ever waits for it: a failed row is the caller's
    // answer, never an unhandled rejection.
    attempt.written.catch(noop);
    return attempt;
  }

  // answered(), outcomeWritten(), unsettled() and badOutcome() are Attempt's way in: not for callers.

  /**
   * An attempt's row is written and its request answered: a plain 200 is settled at once and waits
   * for a watermark (at most outcomeLingerMs, then it gets a row of its own); any other outcome is
   * settled once its outcome row commits. Never refused as overloaded (see enqueue).
   */
  answered(a: Attempt, what: OutcomeRow | "plain"): void {
    if (what !== "plain") {
      this.queueOutcome(what, a);
      return;
    }
    if (a.epoch !== this.epoch) {
      // Its epoch was retired: no watermark of it is sent again, so the outcome gets a row.
      this.forcedPlain.push(a.event);
    } else {
      a.epoch.open.delete(a.seq);
      a.epoch.plain.set(a.seq, { event: a.event, answeredAt: this.now() });
    }
    this.armLinger();
  }

  /** An attempt's explicit outcome row committed: it is settled. */
  outcomeWritten(a: Attempt): void {
    if (a.epoch === this.epoch) a.epoch.open.delete(a.seq);
  }

  /**
   * An attempt that can never be settled (its row or its outcome row failed, or its outcome was
   * not an HTTP status): it stays open in its epoch for good, so the requests after it go to a new one.
   */
  unsettled(a: Attempt): void {
    if (a.epoch === this.epoch) this.retireEpoch();
  }

  /** A caller's outcome that is not an HTTP status: a bug in the caller, logged, not written. */
  badOutcome(a: Attempt, outcome: unknown): void {
    this.log.error({ outcome: String(outcome).slice(0, 16) }, "audit outcome is not an HTTP status");
    this.unsettled(a);
  }

  /**
   * Starts a new epoch for the attempts begun from now on. The old one's plain answers that no
   * committed watermark covers get rows of their own (forcedPlain); so do its open attempts' plain
   * answers when they come (answered()).
   */
  private retireEpoch(): void {
    const old = this.epoch;
    this.epoch = new Epoch(this.seqNext, this.seqOf);
    this.counts.epochs++;
    for (const [seq, p] of old.plain) if (seq > old.committedUpto) this.forcedPlain.push(p.event);
    old.plain.clear();
    if (this.forcedPlain.length > 0) this.armLinger();
  }

  /** Plain answers wait for a watermark or a row of their own. */
  private plainWaiting(): boolean {
    return this.forcedPlain.length > 0 || this.epoch.plain.size > 0;
  }

  /**
   * Queues an outcome row, never refused as overloaded (see enqueue). No promise: nobody waits for
   * it; a failure is counted and logged by the writer, and the row reads back with its outcome
   * unknown. Closed: dropped, as a failed write would be.
   */
  private queueOutcome(outcomeRow: OutcomeRow, attempt: Attempt | undefined): void {
    if (this.closed) return;
    this.queue.push(
      new Pending(undefined, outcomeRow, this.now() + this.writeTimeoutMs, noop, noop, attempt),
    );
    this.armDeadline();
    // An outcome alone waits for the next event row.
    if (this.writing === undefined) this.armLinger();
  }

  /** Why an event row would be refused now (closed, queue full); undefined: it would be queued. */
  private refusal(): AppError | undefined {
    if (this.closed) return new AppError("UNAVAILABLE", "audit log is closed");
    if (this.queue.length >= this.queueRowsMax) {
      this.counts.rowsOverloaded++;
      rowsTotal.inc({ result: "overloaded" });
      return new AppError("OVERLOADED", "too many audit rows waiting to be written", undefined, {
        "retry-after": "1",
      });
    }
    return undefined;
  }

  /**
   * Queues a row. Event rows are refused when the queue is full; outcome rows are not: each belongs
   * to an event row that was written, so they come no faster than events are written and expire
   * at their deadline like any row, and refusing one would lose the outcome of an act already answered.
   */
  private enqueue(row: Row, outcomeRow: undefined, attempt: Attempt | undefined): Promise<void> {
    if (this.closed) return Promise.reject(new AppError("UNAVAILABLE", "audit log is closed"));
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => {
      this.queue.push(
        new Pending(row, outcomeRow, this.now() + this.writeTimeoutMs, resolve, reject, attempt),
      );
      this.armDeadline();
      // On a microtask, not a timer: rows recorded in the same turn share the first INSERT, and an
      // idle log does not wait.
      if (this.writing === undefined) this.startDrain();
    });
  }

  private startDrain(): void {
    this.writing = Promise.resolve().then(() => this.drain());
  }

  /**
   * The one timer for what waits outcomeLingerMs rather than ride with the next event row: outcome
   * rows (counted from their queueing: one may have waited behind a slow INSERT already, and must go
   * well within its deadline), plain answers above the watermark (from their answer), and those of
   * retired epochs (at once). Fires for the longest-waiting, and flushes; never before `retryAt`.
   * Re-armed after every INSERT (drain()).
   */
  private armLinger(): void {
    if (this.lingerTimer !== undefined || this.closed) return;
    let due = Number.POSITIVE_INFINITY;
    const oldest = this.queue[0];
    if (oldest !== undefined) due = oldest.deadline - this.writeTimeoutMs + this.outcomeLingerMs;
    const plain = this.epoch.plain.values().next().value;
    if (plain !== undefined) due = Math.min(due, plain.answeredAt + this.outcomeLingerMs);
    if (this.forcedPlain.length > 0) due = Math.min(due, this.now());
    if (due === Number.POSITIVE_INFINITY) return;
    this.lingerTimer = setTimeout(
      () => {
        this.lingerTimer = undefined;
        this.flush();
      },
      Math.max(0, Math.max(due, this.retryAt) - this.now()),
    );
    this.lingerTimer.unref();
  }

  /** Sends what is queued now, outcome rows and plain answers alone included. */
  private flush(): void {
    if (this.queue.length === 0) {
      // Nothing queued and no answer waiting: nothing to send, and no flag left set to send a
      // later outcome alone.
      if (!this.plainWaiting()) return;
      // Plain answers only: a marker carries them (and is what list() waits for).
      this.queue.push(
        new Pending(undefined, undefined, this.now() + this.writeTimeoutMs, noop, noop, undefined),
      );
      this.armDeadline();
    }
    this.flushAll = true;
    if (this.writing === undefined) this.startDrain();
  }

  /**
   * Resolves once every row queued before the call has settled (written or failed): a reader on
   * this gateway sees the outcomes of requests it was already answered. Never rejects.
   */
  private settledSoFar(): Promise<void> {
    this.flush();
    const newest = this.queue[this.queue.length - 1] ?? this.inFlight.findLast((p) => !p.settled);
    if (newest === undefined || newest.settled) return Promise.resolve();
    return new Promise<void>((resolve) => {
      newest.waiters ??= [];
      newest.waiters.push(resolve);
    });
  }

  /** One page, newest first; `cursor` is the nextCursor of the page before. */
  async list(q: { patientId?: string; limit?: number; cursor?: string }): Promise<AuditPage> {
    const limit = q.limit ?? auditLimits.pageLimitDefault;
    if (!Number.isInteger(limit) || limit < 1 || limit > auditLimits.pageLimitMax)
      throw new AppError(
        "VALIDATION",
        `limit must be an integer from 1 to ${auditLimits.pageLimitMax}`,
        "limit",
      );
    if (q.patientId !== undefined && !isUuid(q.patientId))
      throw new AppError("VALIDATION", "patientId must be a UUID", "patientId");
    const before = q.cursor === undefined || q.cursor === "" ? undefined : decodeAuditCursor(q.cursor);
    const where: string[] = [];
    const values: unknown[] = [];
    if (q.patientId !== undefined) {
      values.push(q.patientId);
      where.push(`patient_id = $${values.length}`);
    }
    if (before !== undefined) {
      values.push(before);
      where.push(`id < $${values.length}::bigint`);
    }
    values.push(limit + 1);
    // By id: the order rows were written in, and a total order (recorded_at is shared by a batch).
    // Qualified: a bare "id" in ORDER BY would be the text column of the select list.
    const sql = `SELECT ${selectColumns} FROM audit_trail ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY audit_trail.id DESC LIMIT $${values.length}`;
    await this.settledSoFar();
    let rows: DbRow[];
    try {
      rows = (await withClient(this.pool, (c) => c.query<DbRow>(sql, values))).rows;
    } catch (err) {
      throw unavailableError(err) ?? new AppError("INTERNAL", "audit read failed");
    }
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map(recordOf),
      nextCursor: rows.length > limit && last ? encodeAuditCursor(last.id) : undefined,
    };
  }

  stats(): AuditStats {
    return { ...this.counts, queuedRows: this.queue.length };
  }

  /** Writes what is queued (each row within its deadline), then ends the pool if it is ours. */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
    while (this.writing) await this.writing;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (this.ownsPool) await this.pool.end();
  }

  private rowOf(e: AuditAttemptEntry, outcome: number | null): Row {
    if (!(auditActions as readonly string[]).includes(e.action))
      throw new AppError("INTERNAL", "audit entry: action is not one of C, R, U, D, E");
    if (!(auditResourceTypes as readonly string[]).includes(e.resourceType))
      throw new AppError("INTERNAL", "audit entry: resourceType is not in auditResourceTypes");
    if (outcome !== null && !isHttpStatus(outcome))
      throw new AppError("INTERNAL", "audit entry: outcome is not an HTTP status");
    const actor = e.actor;
    const known = actor !== undefined && isRole(actor.role) && subPattern.test(actor.sub);
    return {
      occurred_at: new Date(this.now()).toISOString(),
      // A principal that is somehow not one (never from a verified token) is recorded as nobody's.
      actor_sub: known ? actor.sub : null,
      actor_role: known ? actor.role : null,
      action: e.action,
      resource_type: e.resourceType,
      resource_id: idOrNull(e.resourceId),
      patient_id: e.patientId !== undefined && isUuid(e.patientId) ? e.patientId.toLowerCase() : null,
      clinic: idOrNull(e.clinic),
      outcome,
      event: null,
      request_id: idOrNull(e.requestId),
      source: e.source.length <= sourceMax && isIP(e.source) !== 0 ? e.source : null,
      route: routePattern.test(e.route) ? e.route : null,
      writer: null,
      seq: null,
    };
  }

  /**
   * One INSERT at a time; whatever queued meanwhile goes into the next, as long as an event row is
   * among it (or a flush asked for everything). Outcomes left alone wait for the linger timer.
   */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && (this.flushAll || this.queue.some((p) => p.row !== undefined))) {
        const batch = this.queue.splice(0, this.batchRowsMax);
        this.inFlight = batch;
        await this.insert(batch);
        this.inFlight = [];
      }
    } finally {
      this.writing = undefined;
      // Left over: outcomes alone (or whatever an INSERT that threw left), sent by the linger timer;
      // plain answers by theirs.
      if (this.queue.length === 0) this.flushAll = false;
      // Re-armed from the longest-waiting (which may have waited behind this INSERT).
      if (this.lingerTimer !== undefined) clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      this.armLinger();
    }
  }

  private async insert(batch: Pending[]): Promise<void> {
    const rows: Row[] = [];
    const outcomes: OutcomeRow[] = [];
    for (const p of batch) {
      if (p.row !== undefined) rows.push(p.row);
      else if (p.outcomeRow !== undefined) outcomes.push(p.outcomeRow);
    }
    const now = this.now();
    const since = this.epoch.oldestOpenSince();
    if (since !== undefined && now - since > attemptOpenMsMax) {
      this.log.error(
        { openMs: now - since },
        "an audited request has not finished in a minute; new audit writer id",
      );
      this.retireEpoch();
    }
    const epoch = this.epoch;
    const upto = epoch.upto();
    // Plain answers: those below upto ride on this INSERT's watermark; those above it (an older
    // request still runs) get rows of their own once they have waited outcomeLingerMs, or at a
    // flush (the plain timer, list(), close()), so none waits on another request to be seen, nor is
    // lost with it if the gateway dies. Rows of their own go at most batchRowsMax to an INSERT.
    let watermark = false;
    let room = this.batchRowsMax;
    const own: number[] = [];
    for (const [seq, p] of epoch.plain) {
      if (seq <= upto) {
        if (seq > epoch.sentUpto) watermark = true;
      } else if (room > 0 && (this.flushAll || now - p.answeredAt >= this.outcomeLingerMs)) {
        outcomes.push({ event: p.event, outcome: plainOutcome, resource_id: null });
        own.push(seq);
        room--;
      }
    }
    for (const seq of own) epoch.plain.delete(seq);
    const queuedOutcomes = outcomes.length - own.length;
    while (room > 0 && this.forcedPlain.length > 0) {
      outcomes.push({ event: this.forcedPlain.pop()!, outcome: plainOutcome, resource_id: null });
      room--;
    }
    if (watermark) epoch.sentUpto = upto;
    if (rows.length === 0 && outcomes.length === 0 && !watermark) {
      // Markers only, with nothing left to say (an earlier INSERT said it): no statement.
      for (const p of batch) {
        if (p.settled) continue;
        p.settled = true;
        p.resolve();
        wake(p);
      }
      return;
    }
    const values = [
      JSON.stringify(rows),
      JSON.stringify(outcomes),
      watermark ? epoch.writer : null,
      watermark ? upto : null,
    ];
    this.counts.inserts++;
    batchRows.observe(batch.length);
    const end = insertSeconds.startTimer();
    try {
      await withClient(this.pool, (c) => c.query({ name: "audit-insert", text: insertSql, values }));
      end();
      batchesTotal.inc({ result: "ok" });
      if (this.failing) {
        this.failing = false;
        this.log.info({ rows: batch.length }, "audit writes succeed again");
      }
      for (const p of batch) {
        if (p.settled) continue;
        p.settled = true;
        p.resolve();
        if (p.attempt !== undefined) {
          if (p.row !== undefined) p.attempt.rowSettled(true);
          else this.outcomeWritten(p.attempt);
        }
        wake(p);
      }
      if (watermark) {
        this.counts.answeredWritten++;
        watermarksTotal.inc({ result: "written" });
        if (upto > epoch.committedUpto) epoch.committedUpto = upto;
        for (const seq of epoch.plain.keys()) if (seq <= upto) epoch.plain.delete(seq);
      }
      // A flush with more plain answers than one INSERT takes goes on.
      if (this.flushAll && this.plainWaiting() && this.queue.length === 0)
        this.queue.push(
          new Pending(undefined, undefined, this.now() + this.writeTimeoutMs, noop, noop, undefined),
        );
      this.counts.rowsWritten += rows.length;
      this.counts.outcomesWritten += outcomes.length;
      rowsTotal.inc({ result: "written" }, rows.length);
      outcomesTotal.inc({ result: "written" }, outcomes.length);
    } catch (err) {
      end();
      batchesTotal.inc({ result: "failed" });
      const failure = unavailableError(err) ?? new AppError("INTERNAL", "audit write failed");
      if (!this.failing) {
        this.failing = true;
        // The code only: a driver's message can quote values.
        this.log.warn(
          { rows: batch.length, code: (err as { code?: string }).code, error: failure.code },
          "audit write failed",
        );
      }
      // The watermark is not known to be in: the answers it covered stay in `plain` (removed only
      // once one commits) and the next INSERT sends it again. Before fail(), which may retire the
      // epoch: those answers then get rows of their own. The outcome rows of plain answers in this
      // batch are lost (read back unknown), as any failed outcome row is.
      if (watermark) {
        epoch.sentUpto = epoch.committedUpto;
        watermarksTotal.inc({ result: "failed" });
      }
      const plainRows = outcomes.length - queuedOutcomes;
      this.counts.outcomesFailed += plainRows;
      if (plainRows > 0) outcomesTotal.inc({ result: "failed" }, plainRows);
      this.fail(batch, failure);
      // No retry at once: the plain timer waits a linger first, so a PostgreSQL that refuses
      // every statement is not hammered.
      this.retryAt = this.now() + this.outcomeLingerMs;
    }
  }

  private fail(entries: Pending[], err: AppError): void {
    let events = 0;
    let outcomes = 0;
    for (const p of entries) {
      if (p.settled) continue;
      p.settled = true;
      if (p.row) events++;
      else if (p.outcomeRow) outcomes++;
      p.reject(err);
      if (p.attempt !== undefined) {
        if (p.row !== undefined) p.attempt.rowSettled(false);
        else this.unsettled(p.attempt);
      }
      wake(p);
    }
    this.counts.rowsFailed += events;
    this.counts.outcomesFailed += outcomes;
    if (events > 0) rowsTotal.inc({ result: "failed" }, events);
    if (outcomes > 0) outcomesTotal.inc({ result: "failed" }, outcomes);
  }

  /**
   * One timer for every row's deadline, armed for the oldest unsettled row: the batch in flight is
   * older than anything queued, and the queue is in arrival order, so the oldest is first in one of them.
   */
  private armDeadline(): void {
    if (this.deadlineTimer !== undefined) return;
    const oldest = this.inFlight.find((p) => !p.settled) ?? this.queue[0];
    if (oldest === undefined) return;
    this.deadlineTimer = setTimeout(
      () => {
        this.deadlineTimer = undefined;
        this.expire();
        this.armDeadline();
      },
      Math.max(0, oldest.deadline - this.now()),
    );
    this.deadlineTimer.unref();
  }

  private expire(): void {
    const now = this.now();
    const late = new AppError(
      "UNAVAILABLE",
      `audit database did not take the row within ${this.writeTimeoutMs} ms; retry later`,
      undefined,
      { "retry-after": "1" },
    );
    this.fail(
      this.inFlight.filter((p) => p.deadline <= now),
      late,
    );
    let k = 0;
    while (k < this.queue.length && this.queue[k]!.deadline <= now) k++;
    if (k > 0) this.fail(this.queue.splice(0, k), late);
  }
}

function wake(p: Pending): void {
  if (p.waiters === undefined) return;
  for (const w of p.waiters) w();
  p.waiters = undefined;
}

function recordOf(r: DbRow): AuditRecord {
  return {
    id: r.id,
    recorded: r.recorded,
    occurred: r.occurred,
    actor:
      r.actor_sub !== null && isRole(r.actor_role) ? { sub: r.actor_sub, role: r.actor_role } : undefined,
    action: r.action,
    resourceType: r.resource_type,
    resourceId: r.resource_id ?? undefined,
    patientId: r.patient_id ?? undefined,
    clinic: r.clinic ?? undefined,
    outcome: r.outcome ?? undefined,
    requestId: r.request_id ?? undefined,
    source: r.source ?? undefined,
    route: r.route ?? undefined,
  };
}

/**
 * Creates medisync_audit if missing and migrates it, with the services' statement timeout (a
 * migration may wait for another gateway's lock longer than one audit write may take).
 */
export async function prepareAuditDatabase(cfg: Config, log: Logger): Promise<void> {
  await ensureDatabase(cfg.AUDIT_DATABASE_URL, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const pool = createPool(cfg.AUDIT_DATABASE_URL, 1, { statementTimeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  try {
    await migrateAudit(pool, log);
  } finally {
    await pool.end();
  }
}

/** Connections: one for the writer (one INSERT at a time), the rest for GET /v1/audit pages. */
const auditPoolMax = 3;

/**
 * Makes every session of `pool` commit without waiting for PostgreSQL's WAL flush
 * (synchronous_commit = off): a batch's round trip drops from a disk flush to a network hop, and a
 * PostgreSQL crash (not a gateway crash) can lose the rows of roughly the last 3 × wal_writer_delay
 * (0.6 s by default) that were already acknowledged. Nothing is ever half-written. Off by default.
 */
export function useAsyncCommit(pool: pg.Pool): void {
  // Queued on the new client before anything the pool hands it out for, so it runs first; a failure
  // here fails that client's next query too, which the caller sees.
  pool.on("connect", (client) => {
    client.query("SET synchronous_commit = off").catch(() => undefined);
  });
}

/** The gateway's audit log: its database prepared, with a pool of its own (ended by close()). */
export async function openAuditLog(cfg: Config, log: Logger): Promise<AuditLog> {
  await prepareAuditDatabase(cfg, log);
  const pool = createPool(cfg.AUDIT_DATABASE_URL, auditPoolMax, {
    statementTimeoutMs: cfg.AUDIT_WRITE_TIMEOUT_MS,
    onIdleError: (err) =>
      log.warn({ code: (err as { code?: string }).code }, "audit database connection lost"),
  });
  if (!cfg.AUDIT_SYNCHRONOUS_COMMIT) useAsyncCommit(pool);
  return new AuditLog({
    pool,
    log,
    batchRowsMax: cfg.AUDIT_BATCH_ROWS_MAX,
    queueRowsMax: cfg.AUDIT_QUEUE_ROWS_MAX,
    writeTimeoutMs: cfg.AUDIT_WRITE_TIMEOUT_MS,
    ownsPool: true,
  });
}
