// Property test of the cache layer on real PostgreSQL and Redis: random rounds of concurrent reads,
// bookings and cancellations on three instances (and Redis losing every key now and then), checked
// against the history: a read that started after a booking was acknowledged shows the slot booked,
// unless a cancellation of it had started before the read ended (and the mirror rule for cancels).
// Pub/sub invalidation is off: it only frees memory early, and must not be what keeps reads fresh.
// A plain wipe lands between operations and almost never inside a reader's fill window, so a
// "stalled read" holds a reader after its PostgreSQL read until the rest of its round is done,
// wipes Redis, and only then lets it fill: the window where a lost Redis is most dangerous.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import fc from "fast-check";
import { Redis } from "ioredis";
import type pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { SlotCacheOptions } from "../src/appointment/slot-cache.ts";
import { SlotTier } from "../src/gateway/slot-tier.ts";
import { SlotStatus } from "../src/gen/medisync/v1/appointment.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { type ClinicFixture, makeClinic } from "./support/fixtures.ts";
import {
  type Instance,
  REDIS_URL,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

const cfg = testConfig("cacheprop");
const dates = ["2032-01-10", "2032-01-11"];
const instances: Instance[] = [];

/** Holds the next PostgreSQL read of one date on one instance, after the read and before the fill. */
class Gate {
  private armedFor: string | undefined;
  private onHeld: (() => void) | undefined;
  private open: (() => void) | undefined;
  private opened = Promise.resolve();

  wrap = (load: SlotCacheOptions["loadFromDb"]): SlotCacheOptions["loadFromDb"] => {
    return async (clinicId, date) => {
      const day = await load(clinicId, date);
      if (this.armedFor === date) {
        this.armedFor = undefined;
        this.onHeld?.();
        await this.opened;
      }
      return day;
    };
  };

  /** Resolves when a read of `date` is held. */
  arm(date: string): Promise<void> {
    this.armedFor = date;
    this.opened = new Promise((resolve) => {
      this.open = resolve;
    });
    return new Promise((resolve) => {
      this.onHeld = resolve;
    });
  }

  release() {
    this.armedFor = undefined;
    this.open?.();
  }
}
const gates: Gate[] = [];
/** A gateway's slot tier in front of each instance (src/gateway/slot-tier.ts): held to the same rule. */
const tiers: SlotTier[] = [];
let pool: pg.Pool;
let redis: Redis;
let fx: ClinicFixture;
let slotIds: string[];
let dayOf: Map<string, string>;

beforeAll(async () => {
  await resetState(cfg);
  // Without pub/sub: the version check alone must keep every read fresh.
  for (let i = 0; i < 3; i++) {
    const gate = new Gate();
    gates.push(gate);
    instances.push(
      await startInstance(cfg, undefined, `prop-${i}`, { pubsub: false, wrapLoadFromDb: gate.wrap }),
    );
  }
  pool = testPool(cfg);
  redis = new Redis(REDIS_URL);
  for (let i = 0; i < 3; i++) {
    tiers.push(new SlotTier({ redis, keyPrefix: cfg.REDIS_KEY_PREFIX, entriesMax: 100, ttlMs: 60_000 }));
  }
  fx = await makeClinic(pool, dates, 3);
  slotIds = dates.flatMap((d) => fx.days.get(d)!.map((s) => s.id));
  dayOf = new Map(dates.flatMap((d) => fx.days.get(d)!.map((s) => [s.id, d] as const)));
});
afterAll(async () => {
  redis.disconnect();
  await pool.end();
  for (const i of instances) await stopInstance(i);
});

type Op =
  | { kind: "read"; inst: number; day: number }
  | { kind: "gatewayRead"; inst: number; day: number }
  | { kind: "stalledRead"; inst: number; day: number }
  | { kind: "book"; inst: number; slot: number }
  | { kind: "cancel"; inst: number; slot: number }
  | { kind: "wipe" };

interface Event {
  op: "read" | "book" | "cancel" | "wipe";
  slotId?: string;
  start: number;
  end: number;
  ok: boolean;
  /** For reads: status by slot id. */
  seen?: Map<string, SlotStatus>;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant("read" as const), inst: fc.nat(2), day: fc.nat(1) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("gatewayRead" as const), inst: fc.nat(2), day: fc.nat(1) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant("book" as const), inst: fc.nat(2), slot: fc.nat(5) }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("cancel" as const), inst: fc.nat(2), slot: fc.nat(5) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "wipe" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("stalledRead" as const), inst: fc.nat(2), day: fc.nat(1) }),
  },
);

async function activeAppointment(slotId: string): Promise<string | undefined> {
  const r = await pool.query<{ id: string }>(
    "SELECT id FROM appointments WHERE slot_id = $1 AND status = 'booked'",
    [slotId],
  );
  return r.rows[0]?.id;
}

async function wipe(history: Event[]): Promise<void> {
  // Redis restarted: it keeps nothing on disk, so every version key and entry is gone.
  const start = performance.now();
  const keys = await redis.keys(`${cfg.REDIS_KEY_PREFIX}slots:*`);
  if (keys.length > 0) await redis.del(...keys);
  history.push({ op: "wipe", start, end: performance.now(), ok: true });
}

/**
 * A round's operations run concurrently. A stalled read (one per instance and round) is held after
 * its PostgreSQL read until the others are done; then Redis is wiped and the read may fill.
 */
async function runRound(round: Op[], history: Event[]): Promise<void> {
  const stalled: { inst: number; day: number }[] = [];
  const rest: Op[] = [];
  for (const op of round) {
    if (op.kind !== "stalledRead") rest.push(op);
    else if (stalled.some((s) => s.inst === op.inst)) rest.push({ ...op, kind: "read" });
    else stalled.push(op);
  }
  const stalledDone: Promise<void>[] = [];
  try {
    for (const op of stalled) {
      const gate = gates[op.inst]!;
      let held = false;
      const holding = gate.arm(dates[op.day]!).then(() => {
        held = true;
      });
      const done = run({ kind: "read", inst: op.inst, day: op.day }, history);
      stalledDone.push(done);
      // A read that never reaches PostgreSQL (a cache hit) is not held: it just finishes.
      await Promise.race([holding, done]);
      if (!held) gate.release();
    }
    await Promise.all(rest.map((op) => run(op, history)));
    if (stalled.length > 0) await wipe(history);
  } finally {
    for (const g of gates) g.release();
    await Promise.allSettled(stalledDone);
  }
  await Promise.all(stalledDone);
}

async function run(op: Op, history: Event[]): Promise<void> {
  if (op.kind === "wipe") return wipe(history);
  const inst = instances[op.inst]!;
  if (op.kind === "gatewayRead") {
    const start = performance.now();
    const date = dates[op.day]!;
    const { body } = await tiers[op.inst]!.read(
      { clinicId: fx.clinicId, date, practitionerId: undefined },
      () =>
        callUnary(
          inst.client.listSlots.bind(inst.client),
          { clinicId: fx.clinicId, date, practitionerId: "" },
          5_000,
        ),
      (r) => JSON.stringify(r.slots.map((x) => [x.id, x.status])),
      () => "service",
    );
    const slots = JSON.parse(body) as [string, SlotStatus][];
    history.push({ op: "read", start, end: performance.now(), ok: true, seen: new Map(slots) });
    return;
  }
  if (op.kind === "read" || op.kind === "stalledRead") {
    const start = performance.now();
    const r = await callUnary(
      inst.client.listSlots.bind(inst.client),
      { clinicId: fx.clinicId, date: dates[op.day]!, practitionerId: "" },
      5_000,
    );
    history.push({
      op: "read",
      start,
      end: performance.now(),
      ok: true,
      seen: new Map(r.slots.map((s) => [s.id, s.status])),
    });
    return;
  }
  const slotId = slotIds[op.slot]!;
  if (op.kind === "book") {
    const start = performance.now();
    try {
      await callUnary(
        inst.client.book.bind(inst.client),
        { slotId, patientId: randomUUID(), idempotencyKey: "" },
        5_000,
      );
      history.push({ op: "book", slotId, start, end: performance.now(), ok: true });
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== "SLOT_TAKEN") throw err;
      history.push({ op: "book", slotId, start, end: performance.now(), ok: false });
    }
    return;
  }
  const appointmentId = await activeAppointment(slotId);
  if (!appointmentId) return;
  const start = performance.now();
  try {
    await callUnary(inst.client.cancel.bind(inst.client), { appointmentId }, 5_000);
    history.push({ op: "cancel", slotId, start, end: performance.now(), ok: true });
  } catch (err) {
    if (!(err instanceof AppError) || err.code !== "ALREADY_CANCELLED") throw err;
    history.push({ op: "cancel", slotId, start, end: performance.now(), ok: false });
  }
}

/** Every read against every acknowledged write on its slots: returns the first violation found. */
function violation(history: Event[]): string | undefined {
  for (const r of history) {
    if (r.op !== "read" || !r.seen) continue;
    for (const [slotId, status] of r.seen) {
      const writes = history.filter((w) => w.slotId === slotId && (w.op === "book" || w.op === "cancel"));
      // The last write acknowledged before the read started decides, unless another write of the
      // slot overlapped the read (then either answer is allowed).
      const before = writes.filter((w) => w.ok && w.end < r.start).sort((x, y) => x.end - y.end);
      const last = before.at(-1);
      if (!last) continue;
      const overlapping = writes.some((w) => w !== last && w.start < r.end && w.end > last.end);
      if (overlapping) continue;
      const want = last.op === "book" ? SlotStatus.SLOT_STATUS_BOOKED : SlotStatus.SLOT_STATUS_FREE;
      if (status !== want)
        return `slot ${slotId} (${dayOf.get(slotId)}) read ${SlotStatus[status]} after an acknowledged ${last.op}`;
    }
  }
  return undefined;
}

it("no read started after an acknowledged write shows the old slot state, on any instance or gateway tier", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 }),
      async (rounds) => {
        const history: Event[] = [];
        for (const round of rounds) await runRound(round, history);
        const v = violation(history);
        expect(v).toBeUndefined();
      },
    ),
    { numRuns: 60 },
  );
});

it("the history check itself catches a stale read", () => {
  const s = slotIds[0]!;
  const stale: Event[] = [
    { op: "book", slotId: s, start: 0, end: 1, ok: true },
    { op: "read", start: 2, end: 3, ok: true, seen: new Map([[s, SlotStatus.SLOT_STATUS_FREE]]) },
  ];
  expect(violation(stale)).toMatch(/after an acknowledged book/);
  const racing: Event[] = [
    { op: "book", slotId: s, start: 0, end: 1, ok: true },
    { op: "cancel", slotId: s, start: 2.5, end: 4, ok: true },
    { op: "read", start: 2, end: 3, ok: true, seen: new Map([[s, SlotStatus.SLOT_STATUS_FREE]]) },
  ];
  expect(violation(racing)).toBeUndefined();
});
