import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type Command,
  commandSchema,
  decodeCommands,
  encodeCommands,
  entryCommandsMax,
  isCommand,
  returnLotsMax,
} from "./commands.ts";
import { fingerprint, InventoryStateMachine, localDate, usable } from "./state-machine.ts";

const ts = Date.UTC(2030, 5, 15, 12);
let n = 0;
const rid = () => `r${++n}`;

describe("inventory state machine", () => {
  it("deducts first-expiry-first-out, skipping expired lots, never below zero", () => {
    const sm = new InventoryStateMachine();
    // Restocked a week before, while every lot was good; "old" has expired by the deduct.
    sm.apply(1, {
      type: "restock",
      requestId: rid(),
      ts: ts - 7 * 86_400_000,
      clinicId: "c1",
      medicationCode: "amox",
      quantity: 5,
      lot: "late",
      expiresOn: "2031-01-01",
    });
    sm.apply(2, {
      type: "restock",
      requestId: rid(),
      ts: ts - 7 * 86_400_000,
      clinicId: "c1",
      medicationCode: "amox",
      quantity: 5,
      lot: "early",
      expiresOn: "2030-07-01",
    });
    sm.apply(3, {
      type: "restock",
      requestId: rid(),
      ts: ts - 7 * 86_400_000,
      clinicId: "c1",
      medicationCode: "amox",
      quantity: 7,
      lot: "old",
      expiresOn: "2030-06-14",
    });
    const r = sm.apply(4, {
      type: "deduct",
      requestId: rid(),
      ts,
      clinicId: "c1",
      medicationCode: "amox",
      quantity: 7,
    });
    // The answer names the lots taken, earliest expiry first: what a return of it puts back.
    expect(r).toEqual({
      ok: true,
      quantity: 10,
      index: 4,
      lots: [
        { lot: "early", quantity: 5, expiresOn: "2030-07-01" },
        { lot: "late", quantity: 2, expiresOn: "2031-01-01" },
      ],
    });
    expect(sm.item("c1", "amox")!.lots).toEqual([
      { lot: "old", quantity: 7, expiresOn: "2030-06-14" },
      { lot: "late", quantity: 3, expiresOn: "2031-01-01" },
    ]);
    const tooMuch = sm.apply(5, {
      type: "deduct",
      requestId: rid(),
      ts,
      clinicId: "c1",
      medicationCode: "amox",
      quantity: 4,
    });
    expect(tooMuch).toEqual({ ok: false, code: "INSUFFICIENT_STOCK", available: 3, index: 5 });
    expect(sm.item("c1", "amox")!.lots.map((l) => l.quantity)).toEqual([7, 3]);
  });

  it("a retried request id returns its first result and changes nothing", () => {
    const sm = new InventoryStateMachine();
    sm.apply(1, { type: "restock", requestId: "a", ts, clinicId: "c1", medicationCode: "m", quantity: 10 });
    const first = sm.apply(2, {
      type: "deduct",
      requestId: "d",
      ts,
      clinicId: "c1",
      medicationCode: "m",
      quantity: 4,
    });
    const again = sm.apply(3, {
      type: "deduct",
      requestId: "d",
      ts,
      clinicId: "c1",
      medicationCode: "m",
      quantity: 4,
    });
    expect(again).toEqual({ ...first, replayed: true });
    expect(sm.item("c1", "m")!.lots[0]!.quantity).toBe(6);
  });

  it("transfer is atomic and keeps lots and expiry; low stock raises one event", () => {
    const sm = new InventoryStateMachine();
    sm.apply(1, {
      type: "restock",
      requestId: rid(),
      ts,
      clinicId: "a",
      medicationCode: "m",
      quantity: 10,
      lot: "L1",
      expiresOn: "2031-01-01",
    });
    sm.apply(2, {
      type: "setReorderLevel",
      requestId: rid(),
      ts,
      clinicId: "a",
      medicationCode: "m",
      level: 5,
    });
    const fail = sm.apply(3, {
      type: "transfer",
      requestId: rid(),
      ts,
      fromClinicId: "a",
      toClinicId: "b",
      medicationCode: "m",
      quantity: 11,
    });
    expect(fail.ok).toBe(false);
    expect(sm.item("b", "m")?.lots ?? []).toEqual([]);
    const ok = sm.apply(4, {
      type: "transfer",
      requestId: rid(),
      ts,
      fromClinicId: "a",
      toClinicId: "b",
      medicationCode: "m",
      quantity: 6,
    });
    expect(ok).toEqual({ ok: true, quantity: 4, index: 4 });
    expect(sm.item("b", "m")!.lots).toEqual([{ lot: "L1", quantity: 6, expiresOn: "2031-01-01" }]);
    expect(sm.events).toEqual([
      { clinicId: "a", medicationCode: "m", quantity: 4, reorderLevel: 5, index: 4 },
    ]);
  });

  it("apply refuses an index out of order (a replica bug stops loudly)", () => {
    const sm = new InventoryStateMachine();
    sm.apply(2, { type: "restock", requestId: rid(), ts, clinicId: "c", medicationCode: "m", quantity: 1 });
    expect(() =>
      sm.apply(2, { type: "restock", requestId: rid(), ts, clinicId: "c", medicationCode: "m", quantity: 1 }),
    ).toThrow(/invariant/);
  });

  it("commands round-trip through their encoding and bad ones are refused", () => {
    const c: Command = {
      type: "transfer",
      requestId: "x",
      ts,
      fromClinicId: "a",
      toClinicId: "b",
      medicationCode: "m",
      quantity: 2,
    };
    const d: Command = {
      type: "deduct",
      requestId: "y",
      ts,
      clinicId: "a",
      medicationCode: "m",
      quantity: 1,
    };
    expect(decodeCommands(encodeCommands([c, d]))).toEqual([c, d]);
    const bytes = (s: string) => new TextEncoder().encode(s);
    expect(() => decodeCommands(bytes('[{"type":"deduct","quantity":-1}]'))).toThrow();
    expect(() => decodeCommands(bytes("[]"))).toThrow();
    // An entry written before entries carried batches is one command object: it replays as one.
    expect(decodeCommands(bytes(JSON.stringify(c)))).toEqual([c]);
    expect(() => decodeCommands(bytes('{"type":"deduct","quantity":1}'))).toThrow(/invariant/);
    expect(() => encodeCommands([])).toThrow(/invariant/);
    expect(() => encodeCommands(Array.from({ length: entryCommandsMax + 1 }, () => d))).toThrow(/invariant/);
  });

  it("a batch applies its commands in order at one index, each with its own result", () => {
    const sm = new InventoryStateMachine();
    const cmd = (requestId: string, type: "restock" | "deduct", quantity: number): Command => ({
      type,
      requestId,
      ts,
      clinicId: "c",
      medicationCode: "m",
      quantity,
    });
    sm.apply(1, cmd("r", "restock", 5));
    const rs = sm.applyAll(2, [cmd("d1", "deduct", 3), cmd("d2", "deduct", 3), cmd("d3", "deduct", 2)]);
    const unlotted = (quantity: number) => [{ lot: "unlotted", quantity }];
    expect(rs).toEqual([
      { ok: true, quantity: 2, index: 2, lots: unlotted(3) },
      { ok: false, code: "INSUFFICIENT_STOCK", available: 2, index: 2 },
      { ok: true, quantity: 0, index: 2, lots: unlotted(2) },
    ]);
    // A retried command inside a later batch returns its first result and changes nothing.
    sm.apply(3, cmd("r2", "restock", 10));
    const again = sm.applyAll(4, [cmd("d1", "deduct", 3), cmd("d4", "deduct", 1)]);
    expect(again).toEqual([
      { ok: true, quantity: 2, index: 2, lots: unlotted(3), replayed: true },
      { ok: true, quantity: 9, index: 4, lots: unlotted(1) },
    ]);
    expect(() => sm.applyAll(4, [cmd("d5", "deduct", 1)])).toThrow(/invariant/);
  });
});

const clinics = ["a", "b", "c"];
const meds = ["m1", "m2"];
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    type: fc.constant("restock" as const),
    requestId: fc.string({ minLength: 1, maxLength: 4 }),
    ts: fc.constant(ts),
    clinicId: fc.constantFrom(...clinics),
    medicationCode: fc.constantFrom(...meds),
    quantity: fc.integer({ min: 1, max: 50 }),
    lot: fc.constantFrom("L1", "L2", "L3"),
    expiresOn: fc.constantFrom("2030-01-01", "2030-06-20", "2031-01-01"),
  }),
  fc.record({
    type: fc.constant("deduct" as const),
    requestId: fc.string({ minLength: 1, maxLength: 4 }),
    ts: fc.constant(ts),
    clinicId: fc.constantFrom(...clinics),
    medicationCode: fc.constantFrom(...meds),
    quantity: fc.integer({ min: 1, max: 60 }),
  }),
  fc.record({
    type: fc.constant("transfer" as const),
    requestId: fc.string({ minLength: 1, maxLength: 4 }),
    ts: fc.constant(ts),
    fromClinicId: fc.constantFrom(...clinics),
    toClinicId: fc.constantFrom(...clinics),
    medicationCode: fc.constantFrom(...meds),
    quantity: fc.integer({ min: 1, max: 60 }),
  }),
  fc.record({
    type: fc.constant("returnStock" as const),
    requestId: fc.string({ minLength: 1, maxLength: 4 }),
    ts: fc.constant(ts),
    clinicId: fc.constantFrom(...clinics),
    medicationCode: fc.constantFrom(...meds),
    lots: fc.array(
      fc.record(
        {
          lot: fc.constantFrom("L1", "L2", "L3", "unlotted"),
          quantity: fc.integer({ min: 1, max: 30 }),
          expiresOn: fc.constantFrom("2030-01-01", "2030-06-20", "2031-01-01"),
        },
        { requiredKeys: ["lot", "quantity"] },
      ),
      { minLength: 1, maxLength: 4 },
    ),
  }),
);

describe("inventory state machine properties", () => {
  it("never negative; transfers conserve; same log → same hash; snapshot restores exactly; retries change nothing", () => {
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 80 }), (cmds) => {
        const a = new InventoryStateMachine({ idsMax: 20 });
        const b = new InventoryStateMachine({ idsMax: 20 });
        let restocked = 0;
        let deducted = 0;
        let returned = 0;
        const fps = new Map<string, number>();
        cmds.forEach((cmd, i) => {
          const seen = a.resultOf(cmd.requestId);
          const before = a.stateHash();
          const r = a.apply(i + 1, cmd);
          b.apply(i + 1, cmd);
          if (seen) {
            // A retry answers its first result; the same id with another command is refused.
            if (fps.get(cmd.requestId) === fingerprint(cmd)) expect(r).toEqual({ ...seen, replayed: true });
            else expect(r).toEqual({ ok: false, code: "IDEMPOTENCY_KEY_REUSED", index: i + 1 });
            expect(a.stateHash()).toBe(before);
          } else if (!r.ok && r.code === "IDEMPOTENCY_WINDOW_FULL") {
            expect(a.rememberedIds).toBe(20);
            expect(a.stateHash()).toBe(before);
          } else if (r.ok && cmd.type === "restock") restocked += cmd.quantity;
          else if (r.ok && cmd.type === "deduct") deducted += cmd.quantity;
          else if (r.ok && cmd.type === "returnStock")
            returned += cmd.lots.reduce((t, l) => t + l.quantity, 0);
          if (!seen && a.resultOf(cmd.requestId)) fps.set(cmd.requestId, fingerprint(cmd));
          for (const c of clinics)
            for (const [, item] of a.items(c))
              for (const l of item.lots) expect(l.quantity).toBeGreaterThan(0);
        });
        let held = 0;
        for (const c of clinics)
          for (const [, item] of a.items(c)) held += item.lots.reduce((s, l) => s + l.quantity, 0);
        expect(held).toBe(restocked + returned - deducted);
        expect(b.stateHash()).toBe(a.stateHash());
        const c = new InventoryStateMachine({ idsMax: 20 });
        c.restore(a.snapshot());
        expect(c.stateHash()).toBe(a.stateHash());
        expect(c.lastApplied).toBe(a.lastApplied);
        expect(c.snapshot()).toEqual(a.snapshot());
        for (const x of clinics)
          for (const [, item] of a.items(x)) expect(usable(item, "2030-06-15")).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 300 },
    );
  });
});

/** Ways to damage a return's lots, each an arbitrary of the damaged list. */
function lotsDamaged(lots: Record<string, unknown>[]): fc.Arbitrary<unknown>[] {
  const at = fc.nat({ max: lots.length - 1 });
  const replaced = (i: number, l: unknown) => lots.map((x, j) => (j === i ? l : x));
  return [
    fc.tuple(at, fc.constantFrom("lot", "quantity", "expiresOn")).map(([i, k]) => {
      const { [k]: _, ...rest } = lots[i]!;
      return replaced(i, rest);
    }),
    fc
      .tuple(
        at,
        fc.constantFrom("lot", "quantity", "expiresOn", "extra"),
        fc.oneof(fc.jsonValue(), fc.double(), fc.integer(), fc.string()),
      )
      .map(([i, k, v]) => replaced(i, { ...lots[i], [k]: v })),
    fc.tuple(at, fc.jsonValue()).map(([i, v]) => replaced(i, v)),
    fc.constant([]),
    fc.constant(Array.from({ length: returnLotsMax + 1 }, () => lots[0])),
    fc.constant(Array.from({ length: returnLotsMax }, () => lots[0])),
  ];
}

describe("what every replica computes alike", () => {
  it("a fingerprint is the first 48 bits of SHA-256 over the command's canonical form, as snapshots hold it", () => {
    const deduct: Command = {
      type: "deduct",
      requestId: "r",
      ts,
      clinicId: "c1",
      medicationCode: "amox",
      quantity: 3,
    };
    // Pinned: a fingerprint computed differently would tell a retry from a snapshot it is a reuse.
    expect(fingerprint(deduct)).toBe(createHash("sha256").update("d|c1|amox|3").digest().readUIntBE(0, 6));
    expect(fingerprint(deduct)).toBe(106061495166982);
    fc.assert(
      fc.property(
        fc.string({ unit: "grapheme", maxLength: 40 }),
        fc.integer({ min: 1, max: 1e9 }),
        (code, q) => {
          const cmd: Command = {
            type: "deduct",
            requestId: "r",
            ts,
            clinicId: "c1",
            medicationCode: code,
            quantity: q,
          };
          expect(fingerprint(cmd)).toBe(
            createHash("sha256").update(`d|c1|${code}|${q}`).digest().readUIntBE(0, 6),
          );
        },
      ),
    );
  });

  it("localDate answers as the zone's calendar does, whatever order the times come in", () => {
    const zones = [
      undefined,
      "UTC",
      "Europe/Berlin",
      "America/St_Johns",
      "Asia/Kathmandu",
      "Pacific/Chatham",
    ];
    const direct = (ms: number, zone: string) =>
      new Intl.DateTimeFormat("en-CA", {
        timeZone: zone,
        year: "numeric",
        month: "2-digit",
        day: "2-digit",
      }).format(ms);
    // Times near a local midnight (±3 s) or a DST change, where a stale cached date would show.
    const midnight = Date.UTC(2030, 2, 31, 0, 0, 0);
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.constantFrom(...zones),
            fc.integer({ min: -48, max: 48 }),
            fc.integer({ min: -3_000, max: 3_000 }),
          ),
          { minLength: 1, maxLength: 50 },
        ),
        (asks) => {
          for (const [zone, quarterHours, ms] of asks) {
            const t = midnight + quarterHours * 900_000 + ms;
            expect(localDate(t, zone)).toBe(direct(t, zone ?? "UTC"));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("the hand-written command check", () => {
  it("agrees with the command schema on valid commands and on every kind of damage to them", () => {
    const damaged = commandArb.chain((cmd) =>
      fc.oneof(
        fc.constant<unknown>(cmd),
        // A field dropped, a field set to any JSON value, or a field added.
        fc.constantFrom(...Object.keys(cmd)).map((k) => {
          const { [k]: _, ...rest } = cmd as Record<string, unknown>;
          return rest;
        }),
        fc.tuple(fc.constantFrom(...Object.keys(cmd)), fc.jsonValue()).map(([k, v]) => ({ ...cmd, [k]: v })),
        fc
          .tuple(
            fc.constantFrom("ts", "quantity", "level", "lot", "expiresOn", "clinicId"),
            fc.oneof(fc.double(), fc.integer(), fc.string(), fc.constant(null)),
          )
          .map(([k, v]) => ({ ...cmd, [k]: v })),
        fc.string().map((k) => ({ ...cmd, [`x${k}`]: 1 })),
        // A return's lots: one lot damaged as above, none, too many, or not a list of objects.
        ...(cmd.type === "returnStock" ? lotsDamaged(cmd.lots) : []).map((lots) =>
          lots.map((l) => ({ ...cmd, lots: l })),
        ),
      ),
    );
    fc.assert(
      // What a replica decodes is JSON: compare on what survives a JSON round trip.
      fc.property(damaged, (raw) => {
        const x: unknown = JSON.parse(JSON.stringify(raw));
        expect(isCommand(x)).toBe(commandSchema.safeParse(x).success);
      }),
      { numRuns: 2_000 },
    );
  });
});
