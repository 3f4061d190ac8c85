// What the appointment service keeps, and for how long: idempotency rows for the documented window
// (a retry inside it still returns the first result), relayed outbox rows for their retention
// window, and nothing older. Against the real PostgreSQL, with the windows backdated in SQL.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pruneOnce } from "../src/appointment/pruner.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { type ClinicFixture, makeClinic } from "./support/fixtures.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

const windowSeconds = 3_600;
const cfg = testConfig("pruning", {
  BOOKING_IDEMPOTENCY_WINDOW_SECONDS: String(windowSeconds),
  OUTBOX_RETENTION_SECONDS: String(windowSeconds),
  APPOINTMENT_PRUNE_INTERVAL_MS: "100",
});
let inst: Instance | undefined;
let pool: pg.Pool;
let fx: ClinicFixture;
const date = "2031-11-20";

beforeAll(async () => {
  await resetState(cfg);
  inst = await startInstance(cfg, undefined, "pruning");
  pool = testPool(cfg);
  fx = await makeClinic(pool, [date], 4);
});
afterAll(async () => {
  await pool.end();
  if (inst) await stopInstance(inst);
});

const book = (slotId: string, patientId: string, idempotencyKey: string) =>
  callUnary(inst!.client.book.bind(inst!.client), { slotId, patientId, idempotencyKey }, 5_000);

async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const count = async (sql: string, params: readonly unknown[]) =>
  (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`, [...params])).rows[0]!.n;

describe("pruning", () => {
  it("idempotency rows and relayed outbox rows older than their window are pruned; younger ones keep their promise", async () => {
    const [old, young] = [fx.days.get(date)![0]!, fx.days.get(date)![1]!];
    const oldKey = `old-${randomUUID()}`;
    const youngKey = `young-${randomUUID()}`;
    const youngPatient = randomUUID();
    const oldBooking = await book(old.id, randomUUID(), oldKey);
    const youngBooking = await book(young.id, youngPatient, youngKey);
    const outboxOf = (appointmentId: string) =>
      ["outbox WHERE payload->>'appointmentId' = $1 AND relayed_at IS NOT NULL", [appointmentId]] as const;
    await until(
      async () =>
        (await count(...outboxOf(oldBooking.appointment!.id))) === 1 &&
        (await count(...outboxOf(youngBooking.appointment!.id))) === 1,
      "both events relayed",
    );
    // Backdate the old booking's rows past the window (and a second beyond it).
    await pool.query(
      "UPDATE booking_idempotency SET created_at = now() - make_interval(secs => $2) WHERE key = $1",
      [oldKey, windowSeconds + 1],
    );
    await pool.query(
      "UPDATE outbox SET relayed_at = now() - make_interval(secs => $2) WHERE payload->>'appointmentId' = $1",
      [oldBooking.appointment!.id, windowSeconds + 1],
    );
    // The young rows are nearly as old as the window, but inside it.
    await pool.query(
      "UPDATE booking_idempotency SET created_at = now() - make_interval(secs => $2) WHERE key = $1",
      [youngKey, windowSeconds - 60],
    );
    await until(
      async () =>
        (await count("booking_idempotency WHERE key = $1", [oldKey])) === 0 &&
        (await count(...outboxOf(oldBooking.appointment!.id))) === 0,
      "the old rows pruned",
    );
    expect(await count("booking_idempotency WHERE key = $1", [youngKey])).toBe(1);
    expect(await count(...outboxOf(youngBooking.appointment!.id))).toBe(1);
    // Inside the window the promise holds: the retry returns the first result.
    const retry = await book(young.id, youngPatient, youngKey);
    expect(retry.replayed).toBe(true);
    expect(retry.appointment).toEqual(youngBooking.appointment);
    // The appointments themselves are never pruned.
    expect(await count("appointments WHERE id = $1", [oldBooking.appointment!.id])).toBe(1);
  });

  it("an outbox row that was never relayed is never pruned, however old", async () => {
    // No instance running: nothing relays it meanwhile.
    await stopInstance(inst!);
    inst = undefined;
    const r = await pool.query<{ id: string }>(
      `INSERT INTO outbox (topic, payload, created_at) VALUES ('appointment.booked', '{}', now() - interval '30 days')
       RETURNING id`,
    );
    const limits = { idempotencyWindowSeconds: 1, outboxRetentionSeconds: 1 };
    await pruneOnce(pool, limits);
    expect(await count("outbox WHERE id = $1", [r.rows[0]!.id])).toBe(1);
    await pool.query("UPDATE outbox SET relayed_at = now() - interval '2 seconds' WHERE id = $1", [
      r.rows[0]!.id,
    ]);
    expect((await pruneOnce(pool, limits)).outbox).toBeGreaterThanOrEqual(1);
    expect(await count("outbox WHERE id = $1", [r.rows[0]!.id])).toBe(0);
  });
});
