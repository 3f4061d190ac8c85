// The audit trail against the real PostgreSQL: rows written and read back newest first, pages that
// walk every row once, cursors refused, group commit counted by the database's own transaction ids,
// the queue's cap, the append-only trigger, and PostgreSQL down (an instance of the test's own).
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PG_BASE, testName } from "../../test/support/services.ts";
import { until } from "../../test/support/until.ts";
import { loadConfig } from "../shared/config.ts";
import { AppError } from "../shared/errors.ts";
import { createLogger } from "../shared/logger.ts";
import { registry } from "../shared/metrics.ts";
import { createPool } from "../shared/pg.ts";
import type { Principal } from "../shared/principal.ts";
import {
  type AuditEntry,
  AuditLog,
  type AuditLogOptions,
  decodeAuditCursor,
  encodeAuditCursor,
  openAuditLog,
  prepareAuditDatabase,
  useAsyncCommit,
} from "./audit.ts";

const log = createLogger({ service: "gateway", level: "silent" });
const dbName = `medisync_test_${testName("audit")}`;
const cfg = loadConfig({ AUDIT_DATABASE_URL: `${PG_BASE}/${dbName}`, LOG_LEVEL: "silent" });

let pool: pg.Pool;
const logs: AuditLog[] = [];

function auditLog(o: Partial<AuditLogOptions> = {}): AuditLog {
  const a = new AuditLog({
    pool,
    log,
    batchRowsMax: 1_000,
    queueRowsMax: 10_000,
    writeTimeoutMs: 5_000,
    ...o,
  });
  logs.push(a);
  return a;
}

/**
 * An AuditLog on a pool of its own whose statement timeout (150 ms) cancels an INSERT held by a
 * lock, so what that INSERT carried is surely not in. Ended after `fn`.
 */
async function withShortTimeoutLog(
  o: Partial<AuditLogOptions>,
  fn: (a: AuditLog) => Promise<void>,
): Promise<void> {
  const shortPool = createPool(cfg.AUDIT_DATABASE_URL, 1, { statementTimeoutMs: 150 });
  const a = new AuditLog({
    pool: shortPool,
    log,
    batchRowsMax: 1_000,
    queueRowsMax: 100,
    writeTimeoutMs: 2_000,
    ...o,
  });
  try {
    await fn(a);
  } finally {
    await a.close();
    await shortPool.end();
  }
}

/** A request's outcome as any reader of the database sees it (undefined: no row). */
async function outcomeOf(requestId: string): Promise<number | null | undefined> {
  const r = await pool.query<{ outcome: number | null }>(
    "SELECT outcome FROM audit_trail WHERE request_id = $1",
    [requestId],
  );
  return r.rows[0]?.outcome;
}

const clinician: Principal = { sub: "staff-9", role: "clinician", clinics: ["harbour"] };

function entry(over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    actor: clinician,
    action: "C",
    resourceType: "Appointment",
    resourceId: randomUUID(),
    patientId: randomUUID(),
    clinic: "harbour",
    outcome: 201,
    requestId: randomUUID(),
    source: "127.0.0.1",
    route: "POST /v1/appointments",
    ...over,
  };
}

/** Rows per writing transaction (xmin), for rows whose request id starts with `prefix`. */
async function transactionsOf(prefix: string): Promise<number[]> {
  const r = await pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE request_id LIKE $1 GROUP BY xmin::text ORDER BY min(id)",
    [`${prefix}%`],
  );
  return r.rows.map((x) => x.n);
}

async function walk(a: AuditLog, q: { patientId?: string; limit: number }) {
  const ids: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await a.list({ ...q, ...(cursor ? { cursor } : {}) });
    expect(page.items.length).toBeLessThanOrEqual(q.limit);
    ids.push(...page.items.map((i) => i.id));
    cursor = page.nextCursor;
    pages++;
  } while (cursor !== undefined && pages < 1_000);
  return { ids, pages };
}

function metric(name: string, labels: Record<string, string>): Promise<number> {
  return (async () => {
    const m = await registry.getSingleMetric(name)?.get();
    const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
    return v?.value ?? 0;
  })();
}

/** Resolves once a session of this database waits for a lock (our INSERT behind a test's LOCK TABLE). */
async function untilInsertWaits(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await pool.query(
      "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO audit_events%'",
    );
    if (r.rowCount) return;
    if (Date.now() > deadline) throw new Error("the audit INSERT never waited for the lock");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Holds a lock that blocks INSERTs into audit_events until the returned function is called. */
async function blockInserts(): Promise<() => Promise<void>> {
  const c = new pg.Client({ connectionString: cfg.AUDIT_DATABASE_URL });
  await c.connect();
  await c.query("BEGIN");
  await c.query("LOCK TABLE audit_events IN SHARE MODE");
  return async () => {
    await c.query("COMMIT");
    await c.end();
  };
}

/** Lets queued callbacks and microtasks run: what "at once" means for the writer. Not a wait for time. */
async function turnsOfTheLoop(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

/**
 * Finishes `first` (its row already written) while a second request's INSERT is held by a table
 * lock, so the outcome queues behind an INSERT in flight; `whileHeld` runs before the lock goes.
 * Resolves once the second row is written.
 */
async function outcomeBehindHeldInsert(
  a: AuditLog,
  first: ReturnType<AuditLog["begin"]>,
  e: Omit<AuditEntry, "outcome">,
  whileHeld: () => void = () => undefined,
): Promise<void> {
  const release = await blockInserts();
  let second: ReturnType<AuditLog["begin"]>;
  try {
    second = a.begin({ ...e, requestId: randomUUID() });
    await untilInsertWaits();
    first.finish(200);
    whileHeld();
  } finally {
    await release();
  }
  await second.written;
}

beforeAll(async () => {
  const root = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await root.connect();
  await root.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await root.end();
  await prepareAuditDatabase(cfg, log);
  pool = createPool(cfg.AUDIT_DATABASE_URL, 4);
});

afterAll(async () => {
  for (const a of logs) await a.close();
  await pool?.end();
});

describe("AuditLog", () => {
  it("writes a row per record() and reads it back with every field, times from both clocks", async () => {
    const at = Date.parse("2026-12-04T10:11:12.345Z");
    const a = auditLog({ now: () => at });
    const e = entry({ patientId: randomUUID().toUpperCase() });
    const before = Date.now();
    await a.record(e);
    const page = await a.list({ patientId: e.patientId!.toLowerCase(), limit: 10 });
    expect(page.items).toHaveLength(1);
    const r = page.items[0]!;
    expect(r).toMatchObject({
      occurred: "2026-12-04T10:11:12.345Z",
      actor: { sub: "staff-9", role: "clinician" },
      action: "C",
      resourceType: "Appointment",
      resourceId: e.resourceId,
      patientId: e.patientId!.toLowerCase(),
      clinic: "harbour",
      outcome: 201,
      requestId: e.requestId,
      source: "127.0.0.1",
      route: "POST /v1/appointments",
    });
    expect(r.recorded).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    // The database's clock, at the INSERT (same machine here, so close to ours).
    expect(Math.abs(Date.parse(r.recorded) - before)).toBeLessThan(60_000);
    expect(page.nextCursor).toBeUndefined();
  });

  it("stores an unauthenticated request as nobody's, and anything not id-shaped as null", async () => {
    const a = auditLog();
    const requestId = `free-${randomUUID()}`;
    await a.record(
      entry({
        actor: undefined,
        action: "R",
        resourceId: "Jane Doe, born 1970",
        patientId: "not-a-uuid",
        clinic: "harbour clinic; drop table",
        source: "somewhere over the rainbow",
        route: "GET /v1/patients/Jane Doe",
        outcome: 401,
        requestId,
      }),
    );
    const r = await pool.query("SELECT * FROM audit_events WHERE request_id = $1", [requestId]);
    expect(r.rows).toHaveLength(1);
    expect(r.rows[0]).toMatchObject({
      actor_sub: null,
      actor_role: null,
      action: "R",
      resource_id: null,
      patient_id: null,
      clinic: null,
      source: null,
      route: null,
      outcome: 401,
    });
    const [item] = (await a.list({ limit: 1 })).items;
    expect(item?.actor).toBeUndefined();
  });

  it("refuses an action, resource type or outcome outside its list, writing nothing", async () => {
    const a = auditLog();
    const requestId = `bad-${randomUUID()}`;
    for (const bad of [
      { action: "X" as never },
      { resourceType: "Pizza" as never },
      { outcome: 42 },
      { outcome: 200.5 },
    ]) {
      const err = await a.record(entry({ requestId, ...bad })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("INTERNAL");
    }
    const r = await pool.query("SELECT 1 FROM audit_events WHERE request_id = $1", [requestId]);
    expect(r.rowCount).toBe(0);
    expect(a.stats().inserts).toBe(0);
  });

  it("lists newest first, and pages walk every row exactly once, for one patient and for all", async () => {
    const a = auditLog();
    const patient = randomUUID();
    const other = randomUUID();
    const mine: string[] = [];
    for (let i = 0; i < 47; i++) {
      const requestId = `walk-${i}-${randomUUID()}`;
      await a.record(entry({ patientId: i % 5 === 0 ? other : patient, requestId, action: "R" }));
      if (i % 5 !== 0) mine.push(requestId);
    }
    const all = await a.list({ patientId: patient, limit: 100 });
    expect(all.items.map((i) => i.requestId)).toEqual([...mine].reverse());
    expect(all.nextCursor).toBeUndefined();

    const { ids, pages } = await walk(a, { patientId: patient, limit: 7 });
    expect(pages).toBe(Math.ceil(mine.length / 7));
    expect(ids).toEqual(all.items.map((i) => i.id));

    // Unfiltered: every row in the table, once, in strictly falling id order.
    const total = Number((await pool.query("SELECT count(*) AS n FROM audit_events")).rows[0].n);
    const everything = await walk(a, { limit: 9 });
    expect(everything.ids).toHaveLength(total);
    expect(new Set(everything.ids).size).toBe(total);
    const asNumbers = everything.ids.map(BigInt);
    for (let i = 1; i < asNumbers.length; i++) expect(asNumbers[i]! < asNumbers[i - 1]!).toBe(true);
  });

  it("refuses a cursor it did not give out, naming cursor", async () => {
    const a = auditLog();
    const b64 = (s: string) => Buffer.from(s).toString("base64url");
    for (const cursor of [
      "nope!",
      b64("a1:0"),
      b64("a1:-5"),
      b64("a1:12x"),
      b64("a1:9223372036854775808"),
      b64("a2:12"),
      "A".repeat(100),
    ]) {
      const err = await a.list({ limit: 5, cursor }).catch((e: unknown) => e);
      expect(err, cursor).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe("VALIDATION");
      expect((err as AppError).field).toBe("cursor");
    }
    expect(decodeAuditCursor(encodeAuditCursor("9223372036854775807"))).toBe("9223372036854775807");
    for (const bad of [{ limit: 0 }, { limit: 101 }, { limit: 2.5 }]) {
      await expect(a.list(bad)).rejects.toMatchObject({ code: "VALIDATION", field: "limit" });
    }
    await expect(a.list({ limit: 5, patientId: "x" })).rejects.toMatchObject({ field: "patientId" });
  });

  it("group-commits: 500 rows recorded at once take 5 INSERTs of at most batchRowsMax rows", async () => {
    const a = auditLog({ batchRowsMax: 100 });
    const prefix = `burst-${randomUUID()}-`;
    const written = await metric("medisync_audit_rows_total", { result: "written" });
    await Promise.all(Array.from({ length: 500 }, (_, i) => a.record(entry({ requestId: `${prefix}${i}` }))));
    expect(a.stats().inserts).toBe(5);
    // Counted by the database: rows per writing transaction.
    expect(await transactionsOf(prefix)).toEqual([100, 100, 100, 100, 100]);
    expect(await metric("medisync_audit_rows_total", { result: "written" })).toBe(written + 500);
  });

  it("rows that arrive while an INSERT is in flight go into the next one, and a full queue is OVERLOADED", async () => {
    const a = auditLog({ batchRowsMax: 1_000, queueRowsMax: 30 });
    const prefix = `inflight-${randomUUID()}-`;
    const release = await blockInserts();
    let first: Promise<void>;
    const rest: Promise<void>[] = [];
    try {
      first = a.record(entry({ requestId: `${prefix}first` }));
      await untilInsertWaits();
      for (let i = 0; i < 30; i++) rest.push(a.record(entry({ requestId: `${prefix}${i}` })));
      expect(a.stats().queuedRows).toBe(30);
      const err = await a.record(entry({ requestId: `${prefix}over` })).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "OVERLOADED" });
    } finally {
      await release();
    }
    await first;
    await Promise.all(rest);
    expect(await transactionsOf(prefix)).toEqual([1, 30]);
    expect(a.stats()).toMatchObject({ inserts: 2, rowsWritten: 31, rowsOverloaded: 1 });
  });

  it("rejects UNAVAILABLE within writeTimeoutMs when PostgreSQL does not take the row, and writes again after", async () => {
    const a = auditLog({ writeTimeoutMs: 400 });
    const release = await blockInserts();
    let elapsed: number;
    let err: unknown;
    try {
      const t0 = Date.now();
      const waiting = Array.from({ length: 5 }, () => a.record(entry()).catch((e: unknown) => e));
      const results = await Promise.all(waiting);
      elapsed = Date.now() - t0;
      err = results[0];
      for (const r of results) expect(r).toMatchObject({ code: "UNAVAILABLE" });
    } finally {
      await release();
    }
    expect(err).toBeInstanceOf(AppError);
    expect(elapsed).toBeGreaterThanOrEqual(350);
    expect(elapsed).toBeLessThan(1_500);
    await a.record(entry());
    expect(a.stats().rowsFailed).toBe(5);
  });

  it("refuses UPDATE, DELETE and TRUNCATE of the table: history cannot be rewritten", async () => {
    const a = auditLog();
    const requestId = `keep-${randomUUID()}`;
    await a.record(entry({ requestId, outcome: 200 }));
    for (const sql of [
      "UPDATE audit_events SET outcome = 500 WHERE request_id = $1",
      "DELETE FROM audit_events WHERE request_id = $1",
    ]) {
      await expect(pool.query(sql, [requestId])).rejects.toMatchObject({
        code: "42501",
        message: expect.stringContaining("append-only"),
      });
    }
    await expect(pool.query("TRUNCATE audit_events")).rejects.toMatchObject({ code: "42501" });
    const r = await pool.query("SELECT outcome FROM audit_events WHERE request_id = $1", [requestId]);
    expect(r.rows).toEqual([{ outcome: 200 }]);
  });
});

describe("AuditLog rows written ahead of the act", () => {
  it("begin() writes the row while the act runs; finish() appends the outcome and what a create made", async () => {
    const a = auditLog();
    const requestId = `ahead-${randomUUID()}`;
    const patientId = randomUUID();
    const { resourceId: _none, outcome: _o, ...attemptEntry } = entry({ requestId, patientId });
    const attempt = a.begin(attemptEntry);
    await attempt.written;
    // Written, outcome pending: what a gateway that died here would leave behind.
    const pending = (await a.list({ patientId, limit: 5 })).items;
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatchObject({ requestId, outcome: undefined, resourceId: undefined, action: "C" });
    const created = randomUUID();
    attempt.finish(201, created);
    // list() waits for the outcome row this log queued before it.
    const done = (await a.list({ patientId, limit: 5 })).items;
    expect(done).toHaveLength(1);
    expect(done[0]).toMatchObject({ id: pending[0]!.id, requestId, outcome: 201, resourceId: created });
    expect(a.stats()).toMatchObject({ rowsWritten: 1, outcomesWritten: 1 });
  });

  it("finish() called before the row is written still lands after it; a row that failed gets no outcome", async () => {
    const a = auditLog({ writeTimeoutMs: 300 });
    const patientId = randomUUID();
    const release = await blockInserts();
    let failed: string | AppError;
    try {
      const { outcome: _o, ...e } = entry({ patientId });
      const attempt = a.begin(e);
      attempt.finish(201);
      failed = await attempt.written.then(
        () => "written",
        (err: unknown) => err as AppError,
      );
    } finally {
      await release();
    }
    expect(failed).toBeInstanceOf(AppError);
    expect((failed as AppError).code).toBe("UNAVAILABLE");
    // The INSERT may commit after its deadline (the trail may hold a row its caller was told
    // failed); its outcome is never written, so it reads back as unknown.
    const { outcome: _o, ...e2 } = entry({ patientId });
    const second = a.begin(e2);
    second.finish(200);
    await second.written;
    const items = (await a.list({ patientId, limit: 5 })).items;
    expect(items.map((i) => i.outcome).sort()).toEqual(items.length === 2 ? [200, undefined] : [200]);
    // No outcome row names the failed one, and no watermark covers it: the second's 200 is a
    // watermark's (a plain 200 has no outcome row), written under a writer id the first never had.
    const outcomes = await pool.query(
      "SELECT count(*)::int AS n FROM audit_outcomes o JOIN audit_events e USING (event) WHERE e.patient_id = $1",
      [patientId],
    );
    expect(outcomes.rows[0].n).toBe(0);
    expect(a.stats()).toMatchObject({ epochs: 2, answeredWritten: 1 });
  });

  it("events and outcomes recorded together share one INSERT", async () => {
    const a = auditLog();
    const prefix = `mixed-${randomUUID()}-`;
    const { outcome: _o, ...e } = entry({ requestId: `${prefix}0` });
    const first = a.begin(e);
    await first.written;
    const before = a.stats().inserts;
    first.finish(200);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) => a.record(entry({ requestId: `${prefix}${i + 1}` }))),
    );
    // The outcome (queued once `written` settled) and the five rows went in one batch at most two.
    expect(a.stats().inserts - before).toBeLessThanOrEqual(2);
    const r = await pool.query(
      "SELECT count(*)::int AS n FROM audit_trail WHERE request_id LIKE $1 AND outcome IS NOT NULL",
      [`${prefix}%`],
    );
    await a.list({ limit: 1 });
    const after = await pool.query(
      "SELECT count(*)::int AS n FROM audit_trail WHERE request_id LIKE $1 AND outcome IS NOT NULL",
      [`${prefix}%`],
    );
    expect(r.rows[0].n).toBeGreaterThanOrEqual(5);
    expect(after.rows[0].n).toBe(6);
  });

  it("a full queue refuses begin() at once, before any act; outcomes are never refused; finish() counts once", async () => {
    const a = auditLog({ batchRowsMax: 1_000, queueRowsMax: 3 });
    const patientId = randomUUID();
    const { outcome: _o, ...e } = entry({ patientId });
    const done = a.begin(e);
    await done.written;
    const release = await blockInserts();
    const held: Promise<void>[] = [];
    try {
      held.push(a.record(entry({ patientId })));
      await untilInsertWaits();
      for (let i = 0; i < 3; i++) held.push(a.record(entry({ patientId })));
      const refused = a.begin(e);
      expect(refused.refused).toMatchObject({ code: "OVERLOADED" });
      await expect(refused.written).rejects.toMatchObject({ code: "OVERLOADED" });
      // The queue is full of events, yet the outcome of an act already done still goes in line.
      done.finish(201);
      done.finish(500);
      expect(a.stats().queuedRows).toBe(4);
    } finally {
      await release();
    }
    await Promise.all(held);
    const items = (await a.list({ patientId, limit: 10 })).items;
    expect(items).toHaveLength(5);
    expect(items.filter((i) => i.id === items[items.length - 1]!.id)[0]?.outcome).toBe(201);
    expect(a.stats()).toMatchObject({ outcomesWritten: 1, rowsOverloaded: 1 });
  });

  it("an outcome rides with the next request's INSERT: a request costs one INSERT, not two", async () => {
    const a = auditLog({ outcomeLingerMs: 4_000 });
    const patientId = randomUUID();
    const { outcome: _o, ...e } = entry({ patientId });
    const first = a.begin(e);
    await first.written;
    expect(a.stats().inserts).toBe(1);
    first.finish(201);
    // Turns of the event loop, not a wait for time: an outcome alone starts no INSERT.
    await turnsOfTheLoop();
    expect(a.stats()).toMatchObject({ inserts: 1, outcomesWritten: 0, queuedRows: 1 });
    const second = a.begin({ ...e, requestId: randomUUID() });
    await second.written;
    expect(a.stats()).toMatchObject({ inserts: 2, rowsWritten: 2, outcomesWritten: 1 });
    // The one left waiting goes when a reader asks (at once, not after the linger), and the
    // reader sees it.
    second.finish(200);
    const listing = a.list({ patientId, limit: 5 });
    await turnsOfTheLoop(1);
    expect(a.stats().inserts).toBe(3);
    const items = (await listing).items;
    expect(items.map((i) => i.outcome)).toEqual([200, 201]);
    // The 200 by the watermark, the 201 by its outcome row.
    expect(a.stats()).toMatchObject({ inserts: 3, outcomesWritten: 1, answeredWritten: 1 });
  });

  it("an outcome that waited behind a slow INSERT is sent when it ends, its linger counted from its queueing", async () => {
    // The gateway's clock, moved by hand: the held INSERT "takes" 4 s of it.
    let clock = Date.now();
    const a = auditLog({ writeTimeoutMs: 5_000, outcomeLingerMs: 4_000, now: () => clock });
    const { outcome: _o, ...e } = entry();
    const first = a.begin(e);
    await first.written;
    await outcomeBehindHeldInsert(a, first, e, () => {
      clock += 4_000;
    });
    // Lingering another 4 s from here would take it past its deadline (5 s from its queueing).
    await until(() => a.stats().answeredWritten === 1, "the outcome sent once the INSERT ahead ended", 2_000);
  });

  it("a read of the trail on an idle log leaves nothing behind that sends a later outcome alone", async () => {
    const a = auditLog({ outcomeLingerMs: 4_000 });
    const { outcome: _o, ...e } = entry();
    const first = a.begin(e);
    await first.written;
    // Idle: the writer has finished with that row's INSERT.
    await turnsOfTheLoop(1);
    await a.list({ limit: 1 });
    await outcomeBehindHeldInsert(a, first, e);
    await turnsOfTheLoop();
    expect(a.stats()).toMatchObject({ inserts: 2, outcomesWritten: 0, answeredWritten: 0, queuedRows: 0 });
  });

  it("a short write timeout keeps a linger below it by default, and outcomes still go out", async () => {
    // A short write timeout: the linger stays below it, and the outcome still goes out within it.
    const a = auditLog({ writeTimeoutMs: 500 });
    const { outcome: _o, ...e } = entry();
    const one = a.begin(e);
    await one.written;
    one.finish(204);
    await until(() => a.stats().outcomesWritten === 1, "the outcome written", 5_000);
    expect(a.stats().outcomesFailed).toBe(0);
    expect(() => auditLog({ writeTimeoutMs: 50 })).not.toThrow();
  });

  it("an outcome with no request after it is written within outcomeLingerMs, and by close()", async () => {
    const lingering = auditLog({ outcomeLingerMs: 50 });
    const { outcome: _o, ...e } = entry();
    const one = lingering.begin(e);
    await one.written;
    one.finish(200);
    await until(() => lingering.stats().answeredWritten === 1, "the lingering outcome written");

    const closing = auditLog({ outcomeLingerMs: 4_000 });
    const two = closing.begin({ ...e, requestId: randomUUID() });
    await two.written;
    two.finish(204);
    await closing.close();
    expect(closing.stats()).toMatchObject({ outcomesWritten: 1, queuedRows: 0 });
  });

  it("a plain 200 gets no outcome row: one watermark per INSERT answers for the requests under it", async () => {
    const a = auditLog();
    const patientId = randomUUID();
    const { outcome: _o, ...e } = entry({ patientId });
    const watermarksBefore = await metric("medisync_audit_watermarks_total", { result: "written" });
    const attempts = Array.from({ length: 20 }, () => a.begin({ ...e, requestId: randomUUID() }));
    await Promise.all(attempts.map((t) => t.written));
    for (const t of attempts) t.finish(200);
    const items = (await a.list({ patientId, limit: 50 })).items;
    expect(items).toHaveLength(20);
    expect(items.every((i) => i.outcome === 200)).toBe(true);
    expect(a.stats()).toMatchObject({ outcomesWritten: 0, answeredWritten: 1 });
    expect(await metric("medisync_audit_watermarks_total", { result: "written" })).toBe(watermarksBefore + 1);
    const n = await pool.query(
      "SELECT count(*)::int AS n FROM audit_outcomes o JOIN audit_events e USING (event) WHERE e.patient_id = $1",
      [patientId],
    );
    expect(n.rows[0].n).toBe(0);
  });

  it("a request answered while an older one still runs reads back answered at once; the older one once it ends", async () => {
    const a = auditLog({ outcomeLingerMs: 4_000 });
    const patientId = randomUUID();
    const { outcome: _o, ...e } = entry({ patientId });
    const older = a.begin({ ...e, requestId: "older" });
    const newer = a.begin({ ...e, requestId: "newer" });
    await Promise.all([older.written, newer.written]);
    newer.finish(200);
    // The watermark cannot pass the older one, so the reader's flush writes the newer one's own row.
    const byRequest = async () =>
      Object.fromEntries((await a.list({ patientId, limit: 5 })).items.map((i) => [i.requestId, i.outcome]));
    expect(await byRequest()).toEqual({ older: undefined, newer: 200 });
    older.finish(200);
    expect(await byRequest()).toEqual({ older: 200, newer: 200 });
  });

  it("a gateway that dies before its watermark leaves its plain answers unknown, never guessed", async () => {
    const a = auditLog({ outcomeLingerMs: 4_000 });
    const { outcome: _o, ...e } = entry();
    const one = a.begin(e);
    await one.written;
    one.finish(200);
    // Read as another gateway would, before this one's watermark went out (no flush: it "died").
    expect(await outcomeOf(e.requestId)).toBeNull();
    await a.close();
    expect(await outcomeOf(e.requestId)).toBe(200);
  });

  it("an outcome row that failed is never read as 200: its writer id is retired, later requests get a new one", async () => {
    await withShortTimeoutLog({}, async (a) => {
      const patientId = randomUUID();
      const { outcome: _o, ...e } = entry({ patientId });
      const conflicted = a.begin({ ...e, requestId: "conflicted" });
      await conflicted.written;
      const release = await blockInserts();
      let held: ReturnType<AuditLog["begin"]>;
      try {
        conflicted.finish(409);
        // Its outcome row goes with this request's row, into an INSERT the lock holds past the timeout.
        held = a.begin({ ...e, requestId: "held" });
        await expect(held.written).rejects.toMatchObject({ code: "UNAVAILABLE" });
      } finally {
        await release();
      }
      const later = a.begin({ ...e, requestId: "later" });
      await later.written;
      later.finish(200);
      const items = (await a.list({ patientId, limit: 5 })).items;
      expect(Object.fromEntries(items.map((i) => [i.requestId, i.outcome]))).toEqual({
        conflicted: undefined,
        later: 200,
      });
      expect(a.stats()).toMatchObject({ outcomesFailed: 1, rowsFailed: 1 });
      expect(a.stats().epochs).toBeGreaterThanOrEqual(2);
    });
  });

  describe("a plain answer is written within the linger whatever else happens (from a hostile review)", () => {
    for (const how of ["list()", "the linger", "close()"] as const) {
      it(`after an INSERT that could carry no watermark (an older request still runs): by ${how}`, async () => {
        const a = auditLog({ outcomeLingerMs: how === "the linger" ? 50 : 4_000 });
        const { outcome: _o, ...e } = entry();
        const newerId = randomUUID();
        const older = a.begin({ ...e, requestId: randomUUID() });
        const newer = a.begin({ ...e, requestId: newerId });
        await Promise.all([older.written, newer.written]);
        newer.finish(200);
        // This request's INSERT goes out while `older` holds the watermark below `newer`.
        const third = a.begin({ ...e, requestId: randomUUID() });
        await third.written;
        if (how === "list()") {
          const items = (await a.list({ limit: 100 })).items;
          expect(items.find((i) => i.requestId === newerId)?.outcome).toBe(200);
        } else if (how === "the linger") {
          await until(
            async () => (await outcomeOf(newerId)) === 200,
            "the answer written by the linger",
            2_000,
          );
        } else {
          await a.close();
          expect(await outcomeOf(newerId)).toBe(200);
        }
      });
    }

    it("under steady traffic, while an older request still runs", async () => {
      const a = auditLog({ outcomeLingerMs: 50 });
      const { outcome: _o, ...e } = entry();
      const older = a.begin({ ...e, requestId: randomUUID() });
      const victimId = randomUUID();
      const victim = a.begin({ ...e, requestId: victimId });
      await Promise.all([older.written, victim.written]);
      victim.finish(200);
      let stop = false;
      const traffic = (async () => {
        while (!stop) {
          const t = a.begin({ ...e, requestId: randomUUID() });
          await t.written;
          t.finish(200);
        }
      })();
      try {
        await until(
          async () => (await outcomeOf(victimId)) === 200,
          "the answer written under traffic",
          2_000,
        );
      } finally {
        stop = true;
        await traffic;
      }
      older.finish(200);
    });

    it("when the INSERT carrying its watermark fails with another request's row in it", async () => {
      await withShortTimeoutLog({ outcomeLingerMs: 1_000 }, async (a) => {
        const { outcome: _o, ...e } = entry();
        const answeredId = randomUUID();
        const answered = a.begin({ ...e, requestId: answeredId });
        await answered.written;
        answered.finish(200);
        const release = await blockInserts();
        try {
          // Its INSERT carries the watermark over `answered`, and fails.
          const failed = a.begin({ ...e, requestId: randomUUID() });
          await untilInsertWaits();
          await expect(failed.written).rejects.toMatchObject({ code: "UNAVAILABLE" });
        } finally {
          await release();
        }
        const later = a.begin({ ...e, requestId: randomUUID() });
        await later.written;
        later.finish(200);
        const items = (await a.list({ limit: 100 })).items;
        expect(items.find((i) => i.requestId === answeredId)?.outcome).toBe(200);
      });
    });

    it("answers piled up behind an open request do not fill the queue when its writer id is retired", async () => {
      const a = auditLog({ outcomeLingerMs: 4_000, queueRowsMax: 50 });
      const patientId = randomUUID();
      const { outcome: _o, ...e } = entry({ patientId });
      const older = a.begin({ ...e, requestId: randomUUID() });
      await older.written;
      for (let k = 0; k < 3; k++) {
        const ts = Array.from({ length: 25 }, () => a.begin({ ...e, requestId: randomUUID() }));
        await Promise.all(ts.map((t) => t.written));
        for (const t of ts) t.finish(200);
      }
      older.finish(Number.NaN); // a bug in the caller: its writer id is retired
      expect(a.stats().epochs).toBe(2);
      const next = a.begin({ ...e, requestId: randomUUID() });
      expect(next.refused).toBeUndefined();
      await next.written;
      next.finish(200);
      const items = (await a.list({ patientId, limit: 100 })).items;
      expect(items.filter((i) => i.outcome === 200)).toHaveLength(76);
    });
  });

  it("refuses an outcomeLingerMs that is not below writeTimeoutMs", () => {
    expect(() => auditLog({ outcomeLingerMs: 5_000, writeTimeoutMs: 5_000 })).toThrow(/outcomeLingerMs/);
  });

  it("the outcomes table is append-only too", async () => {
    const a = auditLog();
    const { outcome: _o, ...e } = entry();
    const attempt = a.begin(e);
    attempt.finish(201);
    await attempt.written;
    await a.list({ limit: 1 });
    for (const sql of ["UPDATE audit_outcomes SET outcome = 500", "DELETE FROM audit_outcomes"])
      await expect(pool.query(sql)).rejects.toMatchObject({ code: "42501" });
    await expect(pool.query("TRUNCATE audit_outcomes")).rejects.toMatchObject({ code: "42501" });
  });
});

describe("AuditLog with asynchronous commit", () => {
  it("sets synchronous_commit off on every session of its pool, and rows are still written", async () => {
    const p = createPool(cfg.AUDIT_DATABASE_URL, 2);
    try {
      useAsyncCommit(p);
      const c = await p.connect();
      try {
        expect((await c.query("SHOW synchronous_commit")).rows[0].synchronous_commit).toBe("off");
      } finally {
        c.release();
      }
      const a = new AuditLog({ pool: p, log, batchRowsMax: 10, queueRowsMax: 10, writeTimeoutMs: 5_000 });
      const requestId = `async-${randomUUID()}`;
      await a.record(entry({ requestId }));
      await a.close();
      expect(
        (await pool.query("SELECT 1 FROM audit_events WHERE request_id = $1", [requestId])).rowCount,
      ).toBe(1);
      const sync = await pool.connect();
      try {
        // Only that pool: the test's own sessions still wait for the flush.
        expect((await sync.query("SHOW synchronous_commit")).rows[0].synchronous_commit).toBe("on");
      } finally {
        sync.release();
      }
    } finally {
      await p.end();
    }
  });
});

describe("AuditLog with PostgreSQL down", () => {
  it("rejects within its bound while PostgreSQL is stopped, and records again once it is back", async () => {
    const { startOwnPostgres } = await import("../../test/support/own-postgres.ts");
    const own = await startOwnPostgres();
    let a: AuditLog | undefined;
    try {
      const ownCfg = loadConfig({
        AUDIT_DATABASE_URL: `${own.base}/medisync_audit`,
        AUDIT_WRITE_TIMEOUT_MS: "1000",
        LOG_LEVEL: "silent",
      });
      a = await openAuditLog(ownCfg, log);
      const patientId = randomUUID();
      await a.record(entry({ patientId }));

      await own.stop();
      const t0 = Date.now();
      const err = await a.record(entry({ patientId })).catch((e: unknown) => e);
      expect(Date.now() - t0).toBeLessThan(1_500);
      expect(err).toMatchObject({ code: "UNAVAILABLE" });
      await expect(a.list({ patientId, limit: 5 })).rejects.toMatchObject({ code: "UNAVAILABLE" });

      await own.start();
      const deadline = Date.now() + 20_000;
      for (;;) {
        const ok = await a.record(entry({ patientId, requestId: "after-restart" })).then(
          () => true,
          () => false,
        );
        if (ok) break;
        if (Date.now() > deadline) throw new Error("audit writes did not come back after the restart");
        await new Promise((r) => setTimeout(r, 50));
      }
      const page = await a.list({ patientId, limit: 10 });
      expect(page.items[0]?.requestId).toBe("after-restart");
      // Written before the stop, refused while down, written after: nothing refused was kept.
      expect(page.items.filter((i) => i.requestId !== "after-restart")).toHaveLength(1);
    } finally {
      await a?.close();
      await own.destroy();
    }
  }, 120_000);

  it("retries a plain answer's watermark once a linger, not in a loop, while PostgreSQL is stopped; writes it once back", async () => {
    const { startOwnPostgres } = await import("../../test/support/own-postgres.ts");
    const own = await startOwnPostgres();
    let a: AuditLog | undefined;
    try {
      const ownCfg = loadConfig({
        AUDIT_DATABASE_URL: `${own.base}/medisync_audit`,
        AUDIT_WRITE_TIMEOUT_MS: "1000",
        LOG_LEVEL: "silent",
      });
      await prepareAuditDatabase(ownCfg, log);
      const ownPool = createPool(ownCfg.AUDIT_DATABASE_URL, 1, { statementTimeoutMs: 1_000 });
      const lingerMs = 100;
      a = new AuditLog({
        pool: ownPool,
        log,
        batchRowsMax: 1_000,
        queueRowsMax: 100,
        writeTimeoutMs: 1_000,
        outcomeLingerMs: lingerMs,
        ownsPool: true,
      });
      const { outcome: _o, ...e } = entry();
      const x = a.begin(e);
      await x.written;
      await own.stop();
      const before = a.stats().inserts;
      const t0 = Date.now();
      x.finish(200);
      await until(() => a!.stats().inserts >= before + 3, "three attempts while PostgreSQL is down", 10_000);
      // Three attempts, a linger apart at least: a refused connection fails at once, so a loop
      // without the pause would make thousands in this time.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2 * lingerMs);
      expect(a.stats().inserts).toBeLessThan(before + 3 + 20);
      await own.start();
      await until(
        async () => {
          try {
            const c = new pg.Client({ connectionString: ownCfg.AUDIT_DATABASE_URL });
            await c.connect();
            const r = await c.query("SELECT outcome FROM audit_trail WHERE request_id = $1", [e.requestId]);
            await c.end();
            return r.rows[0]?.outcome === 200;
          } catch {
            return false;
          }
        },
        "the watermark written once PostgreSQL is back",
        20_000,
      );
    } finally {
      await a?.close();
      await own.destroy();
    }
  }, 120_000);
});
