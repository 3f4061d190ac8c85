// Owns the `booking` workload and its system: two real `medisync appointment` processes sharing one
// PostgreSQL database and a Redis server of the run's own (so the nemesis may FLUSHALL it or kill
// and restart it), one clinic day of a few slots. Clients book and cancel their own appointments
// and read the day's slots through either instance, at random; a booking carries an idempotency key
// and is retried with it until the op's deadline, and once more as the lane's next op if it went
// unanswered. Checks, from outside:
//   - the cache promise: no read that starts after an acknowledged booking returned shows that slot
//     free, unless a cancel of that appointment was issued before the read ended;
//   - no double booking in real time: an acknowledged booking of a slot that another acknowledged
//     booking held before it started needs a cancel of the first issued before it returned;
//   - PostgreSQL at the end: never two active appointments for one slot, and every acknowledged
//     answer is there (a booked appointment exists on its slot, a cancelled one is cancelled).
import { randomUUID } from "node:crypto";
import { credentials } from "@grpc/grpc-js";
import pg from "pg";
import { migrate } from "../../src/appointment/migrate.ts";
import { AppointmentServiceClient, SlotStatus } from "../../src/gen/medisync/v1/appointment.ts";
import { AppError } from "../../src/shared/errors.ts";
import { callUnary, clientChannelOptions } from "../../src/shared/grpc.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { createPool, ensureDatabase } from "../../src/shared/pg.ts";
import { isRetryable } from "../../src/shared/retry.ts";
import { makeClinic } from "../../test/support/fixtures.ts";
import { type OwnRedis, startOwnRedis } from "../../test/support/own-redis.ts";
import { freePortRange, runCli, type Watched } from "../../test/support/process.ts";
import { testName } from "../../test/support/services.ts";
import type { Op } from "../checker/history.ts";
import type { CheckResult, Failure } from "../checker/linearizable.ts";
import type { Harness } from "../harness.ts";
import type { Health, Inject, NemesisSystem } from "../nemesis.ts";
import type { Random } from "../random.ts";

export type BookingInput =
  | { f: "book"; slot: number; patientId: string; idempotencyKey: string }
  | { f: "cancel"; slot: number; appointmentId: string }
  | { f: "read" };

export type BookingOutput =
  | { ok: true; appointmentId: string }
  | { ok: true; cancelled: true }
  /** Read: the indexes of the slots shown free, the instance and the tier that answered. */
  | { ok: true; free: number[]; instance: number; tier: number }
  | { ok: false; error: string };

export type BookingOp = Op<BookingInput, BookingOutput> & { instance?: number };

export interface BookingWorkloadOptions {
  clients: number;
  slots: number;
  thinkMs: number;
  readFraction: number;
  /** Of the writes, the share that cancel one of the client's own appointments (when it has one). */
  cancelFraction: number;
}

export const bookingDefaults: BookingWorkloadOptions = {
  clients: 4,
  slots: 4,
  thinkMs: 30,
  readFraction: 0.45,
  cancelFraction: 0.45,
};

const day = "2031-06-02";
const healthDay = "2031-06-03";
const instanceCount = 2;
const tryDeadlineMs = 1_000;

interface FinalRow {
  id: string;
  slot_id: string;
  status: string;
}

export function bookingHarness(
  o: { name: string; opDeadlineMs: number },
  w: Partial<BookingWorkloadOptions> = {},
): Harness<BookingOp> {
  const options = { ...bookingDefaults, ...w };
  const name = testName(o.name);
  const dbUrl = `${process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432"}/medisync_test_${name}_appt`;
  const prefix = `test-${name}:`;
  let redis: OwnRedis | undefined;
  let pool: pg.Pool | undefined;
  let base = 0;
  let clinicId = "";
  let slotIds: string[] = [];
  let healthSlot = "";
  const procs: Watched[] = [];
  const runs: { name: string; w: Watched }[] = [];
  const clients: AppointmentServiceClient[] = [];
  let finalRows: FinalRow[] | undefined;
  let finalError: string | undefined;

  const dropDb = async () => {
    const admin = new pg.Client({ connectionString: new URL("/postgres", dbUrl).toString() });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${new URL(dbUrl).pathname.slice(1)}" WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  };
  const startInstance = (i: number) => {
    const p = runCli(["appointment"], {
      DATABASE_URL: dbUrl,
      REDIS_URL: redis!.url,
      REDIS_KEY_PREFIX: prefix,
      APPOINTMENT_GRPC_PORT: String(base + i),
      APPOINTMENT_OPS_PORT: String(base + instanceCount + i),
      INSTANCE_ID: `appt-${i + 1}`,
      LOG_LEVEL: "info",
      SHUTDOWN_UNREADY_MS: "0",
    });
    procs[i] = p;
    runs.push({ name: `appt-${i + 1}-${p.proc.pid}.log`, w: p });
    return p.waitFor(/appointment service listening/, 60_000);
  };

  /** One op on one instance, retried (same idempotency key) on UNAVAILABLE within the deadline. */
  const call = async <T>(
    random: Random,
    fn: (c: AppointmentServiceClient, deadlineMs: number) => Promise<T>,
  ): Promise<{ value: T; instance: number }> => {
    const deadline = Date.now() + o.opDeadlineMs;
    let instance = Math.floor(random() * instanceCount);
    for (;;) {
      const left = deadline - Date.now();
      try {
        return { value: await fn(clients[instance]!, Math.max(1, Math.min(tryDeadlineMs, left))), instance };
      } catch (err) {
        if (!isRetryable(err) || deadline - Date.now() < 20) throw err;
        instance = (instance + 1) % instanceCount;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };

  const healthWrite = async (random: Random, boundMs: number): Promise<void> => {
    // One key and one patient for every try: a retry replays the first outcome.
    const idempotencyKey = randomUUID();
    const patientId = randomUUID();
    const deadline = Date.now() + boundMs;
    for (;;) {
      const c = clients[Math.floor(random() * instanceCount)]!;
      try {
        const left = Math.max(1, Math.min(tryDeadlineMs, deadline - Date.now()));
        const r = await callUnary(c.book.bind(c), { slotId: healthSlot, patientId, idempotencyKey }, left);
        await callUnary(c.cancel.bind(c), { appointmentId: r.appointment!.id }, left).catch(() => undefined);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const healthRandom = () => Math.random();

  const faults: NemesisSystem["faults"] = {
    "redis-flush": (async () => {
      await redis!.flushAll();
      return { target: "redis", impaired: [], leaderless: true, heal: async () => undefined };
    }) satisfies Inject,
    "redis-restart": (async () => {
      await redis!.kill();
      return { target: "redis", impaired: [], leaderless: true, heal: () => redis!.start() };
    }) satisfies Inject,
  };
  const system: NemesisSystem = {
    faults,
    leader: async () => "",
    async health(_leaderWaitMs, writeMs, at): Promise<Health> {
      const t = Date.now();
      try {
        await healthWrite(healthRandom, writeMs);
        return { at, leader: "", writeMs: Date.now() - t };
      } catch (err) {
        return { at, leader: "", writeMs: -1, error: String(err instanceof Error ? err.message : err) };
      }
    },
  };

  return {
    workload: "booking",
    replicas: instanceCount,
    system,
    async start() {
      await dropDb();
      redis = await startOwnRedis();
      await ensureDatabase(dbUrl);
      pool = createPool(dbUrl, 2);
      await migrate(pool, createLogger({ service: "jepsen-booking", level: "silent" }));
      const fx = await makeClinic(pool, [day, healthDay], options.slots);
      clinicId = fx.clinicId;
      slotIds = fx.days.get(day)!.map((s) => s.id);
      healthSlot = fx.days.get(healthDay)![0]!.id;
      base = await freePortRange(2 * instanceCount);
      await Promise.all(Array.from({ length: instanceCount }, (_, i) => startInstance(i)));
      for (let i = 0; i < instanceCount; i++) {
        clients.push(
          new AppointmentServiceClient(
            `127.0.0.1:${base + i}`,
            credentials.createInsecure(),
            clientChannelOptions,
          ),
        );
      }
    },

    async drive(d) {
      const history: BookingOp[] = [];
      let nextId = 0;
      let nextClient = options.clients;
      const lane = async (first: number) => {
        let client = first;
        // This client's acknowledged, not yet cancelled appointments.
        const mine: { slot: number; appointmentId: string }[] = [];
        // A booking left unanswered may have been recorded: the API says to retry with the same key,
        // so the lane's next op does (a new op in the history, under the lane's new client id). Left
        // alone, such appointments would hold their slots for the rest of the run, unknown to anyone.
        let unanswered: (BookingInput & { f: "book" }) | undefined;
        while (!d.stopped()) {
          let input: BookingInput;
          const r = d.random();
          if (unanswered) {
            input = unanswered;
            unanswered = undefined;
          } else if (r < options.readFraction) input = { f: "read" };
          else if (mine.length > 0 && d.random() < options.cancelFraction) {
            const [a] = mine.splice(Math.floor(d.random() * mine.length), 1);
            input = { f: "cancel", ...a! };
          } else {
            input = {
              f: "book",
              slot: Math.floor(d.random() * options.slots),
              patientId: randomUUID(),
              idempotencyKey: randomUUID(),
            };
          }
          const callAt = d.now();
          let output: BookingOutput | undefined;
          let instance: number | undefined;
          let error: string | undefined;
          try {
            if (input.f === "read") {
              const res = await call(d.random, (c, t) =>
                callUnary(c.listSlots.bind(c), { clinicId, date: day, practitionerId: "" }, t),
              );
              instance = res.instance;
              const free = res.value.slots
                .filter((s) => s.status === SlotStatus.SLOT_STATUS_FREE)
                .map((s) => slotIds.indexOf(s.id))
                .filter((i) => i >= 0)
                .sort((a, b) => a - b);
              output = { ok: true, free, instance, tier: res.value.tier };
            } else if (input.f === "book") {
              const { slot, patientId, idempotencyKey } = input;
              const res = await call(d.random, (c, t) =>
                callUnary(c.book.bind(c), { slotId: slotIds[slot]!, patientId, idempotencyKey }, t),
              );
              instance = res.instance;
              output = { ok: true, appointmentId: res.value.appointment!.id };
              mine.push({ slot, appointmentId: output.appointmentId });
            } else {
              const { appointmentId } = input;
              let retried = false;
              const res = await call(d.random, async (c, t) => {
                try {
                  return await callUnary(c.cancel.bind(c), { appointmentId }, t);
                } catch (err) {
                  // Only this client cancels its appointments: ALREADY_CANCELLED on a retry is our
                  // own first try having landed.
                  if (retried && err instanceof AppError && err.code === "ALREADY_CANCELLED")
                    return undefined;
                  retried = true;
                  throw err;
                }
              });
              instance = res.instance;
              output = { ok: true, cancelled: true };
            }
          } catch (err) {
            if (err instanceof AppError && (err.code === "SLOT_TAKEN" || err.code === "ALREADY_CANCELLED")) {
              output = { ok: false, error: err.code };
            } else error = err instanceof AppError ? `${err.code}: ${err.message}` : String(err);
          }
          const op: BookingOp = {
            id: nextId++,
            client,
            key: input.f === "read" ? "day" : `s${input.slot}`,
            input,
            output,
            call: callAt,
            ret: output === undefined ? Number.POSITIVE_INFINITY : d.now(),
            ...(instance === undefined ? {} : { instance }),
            ...(error === undefined ? {} : { error }),
          };
          history.push(op);
          if (output === undefined) {
            client = nextClient++;
            if (input.f === "book") unanswered = input;
          }
          if (options.thinkMs > 0) await new Promise((res) => setTimeout(res, options.thinkMs));
        }
      };
      await Promise.all(Array.from({ length: options.clients }, (_, i) => lane(i)));
      try {
        const rows = await pool!.query<FinalRow>(
          "SELECT id::text AS id, slot_id::text AS slot_id, status FROM appointments WHERE slot_id = ANY($1::uuid[])",
          [slotIds],
        );
        finalRows = rows.rows;
      } catch (err) {
        finalError = String(err);
      }
      return history;
    },

    async healAll() {
      await redis?.start();
    },

    async liveness(boundMs) {
      try {
        await healthWrite(healthRandom, boundMs);
        return true;
      } catch {
        return false;
      }
    },

    links: () => [],
    logs: () => runs.map((r) => ({ name: r.name, lines: r.w.lines })),

    async stop() {
      for (const c of clients) c.close();
      await Promise.all(
        procs.map(async (p) => {
          if (p.proc.exitCode === null && p.proc.signalCode === null) {
            p.proc.kill("SIGKILL");
            await p.exited;
          }
        }),
      );
      await pool?.end();
      await redis?.stop();
      await dropDb();
    },

    check: (history) => checkBooking(history, slotIds, finalRows, finalError),
  };
}

function fail(
  history: BookingOp[],
  blocked: BookingOp | undefined,
  key: string,
  explanation: string,
): CheckResult {
  const failure: Failure = { key, prefix: [], blocked: blocked?.id ?? -1, stateAfterPrefix: "", explanation };
  return { result: "fail", ops: history.length, keys: [], elapsedMs: 0, failure };
}

/** The checks named at the top of the file; `rows` are the appointments PostgreSQL holds at the end. */
export function checkBooking(
  history: BookingOp[],
  slotIds: string[],
  rows: FinalRow[] | undefined,
  rowsError?: string,
): CheckResult {
  const started = Date.now();
  const ackedBooks = history.filter(
    (op): op is BookingOp & { input: { f: "book" }; output: { ok: true; appointmentId: string } } =>
      op.input.f === "book" && op.output?.ok === true,
  );
  const cancelsOf = new Map<string, BookingOp[]>();
  for (const op of history) {
    if (op.input.f !== "cancel") continue;
    const list = cancelsOf.get(op.input.appointmentId) ?? [];
    list.push(op);
    cancelsOf.set(op.input.appointmentId, list);
  }
  /** A cancel of `appointmentId` issued before `t`, acknowledged or not (it may have landed). */
  const cancelledBy = (appointmentId: string, t: number) =>
    (cancelsOf.get(appointmentId) ?? []).some((c) => c.call < t && c.output?.ok !== false);

  // The cache promise.
  for (const r of history) {
    if (r.input.f !== "read" || r.output?.ok !== true || !("free" in r.output)) continue;
    for (const slot of r.output.free) {
      const b = ackedBooks.find(
        (b) => b.input.slot === slot && b.ret < r.call && !cancelledBy(b.output.appointmentId, r.ret),
      );
      if (b) {
        return fail(
          history,
          r,
          `s${slot}`,
          `read op ${r.id} (client ${r.client}, instance ${r.output.instance}, tier ${r.output.tier}) started ` +
            `${Math.round(r.call - b.ret)} ms after booking op ${b.id} of slot s${slot} was acknowledged and shows ` +
            `the slot free, and no cancel of that appointment was issued before the read ended`,
        );
      }
    }
  }
  // No double booking in real time.
  for (const b2 of ackedBooks) {
    const b1 = ackedBooks.find(
      (b1) =>
        b1 !== b2 &&
        b1.input.slot === b2.input.slot &&
        b1.ret < b2.call &&
        !cancelledBy(b1.output.appointmentId, b2.ret),
    );
    if (b1) {
      return fail(
        history,
        b2,
        `s${b2.input.slot}`,
        `booking op ${b2.id} of slot s${b2.input.slot} was acknowledged although booking op ${b1.id} held it ` +
          `since before it started and no cancel of that appointment was issued before it returned`,
      );
    }
  }
  // PostgreSQL at the end.
  if (!rows) {
    return {
      result: "unknown",
      ops: history.length,
      keys: [],
      elapsedMs: Date.now() - started,
      reason: `PostgreSQL could not be read at the end: ${rowsError ?? "no answer"}`,
    };
  }
  const active = new Map<string, number>();
  for (const row of rows)
    if (row.status === "booked") active.set(row.slot_id, (active.get(row.slot_id) ?? 0) + 1);
  for (const [slotId, n] of active) {
    if (n > 1) {
      return fail(
        history,
        undefined,
        `s${slotIds.indexOf(slotId)}`,
        `PostgreSQL holds ${n} active appointments for slot s${slotIds.indexOf(slotId)}`,
      );
    }
  }
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const b of ackedBooks) {
    const row = byId.get(b.output.appointmentId);
    const key = `s${b.input.slot}`;
    if (!row || row.slot_id !== slotIds[b.input.slot]) {
      return fail(history, b, key, `acknowledged booking op ${b.id} is not in PostgreSQL on its slot`);
    }
    const cancels = cancelsOf.get(b.output.appointmentId) ?? [];
    const ackedCancel = cancels.find((c) => c.output?.ok === true);
    if (ackedCancel && row.status !== "cancelled") {
      return fail(
        history,
        ackedCancel,
        key,
        `acknowledged cancel op ${ackedCancel.id} left the appointment ${row.status}`,
      );
    }
    if (cancels.length === 0 && row.status !== "booked") {
      return fail(
        history,
        b,
        key,
        `booking op ${b.id} was never cancelled but PostgreSQL says ${row.status}`,
      );
    }
  }
  const keys = slotIds.map((_, i) => {
    const ops = history.filter((op) => op.key === `s${i}`);
    return {
      key: `s${i}`,
      ops: ops.length,
      indeterminate: ops.filter((op) => op.output === undefined).length,
      result: "ok" as const,
    };
  });
  return { result: "ok", ops: history.length, keys, elapsedMs: Date.now() - started };
}
