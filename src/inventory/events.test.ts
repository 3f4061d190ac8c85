// The low-stock events and their replicated publish cursor: an event stays pending until a
// markEventsPublished entry covers its index, the cursor never passes what was applied before it,
// and a snapshot carries both, so a replica that leads after a restore publishes what was left.
import { describe, expect, it } from "vitest";
import { commandSchema, isCommand } from "./commands.ts";
import { InventoryStateMachine } from "./state-machine.ts";

const ts = 1_800_000_000_000;
const base = { clinicId: "c1", medicationCode: "m1", ts };

function machineWithLowStock(): InventoryStateMachine {
  const sm = new InventoryStateMachine();
  sm.apply(1, { type: "restock", requestId: "r1", quantity: 20, ...base });
  sm.apply(2, { type: "setReorderLevel", requestId: "r2", level: 10, ...base });
  sm.apply(3, { type: "deduct", requestId: "r3", quantity: 12, ...base }); // 8 ≤ 10: an event at 3
  return sm;
}

describe("low-stock events and the publish cursor", () => {
  it("an event stays pending until a markEventsPublished covers its index", () => {
    const sm = machineWithLowStock();
    expect(sm.events.map((e) => e.index)).toEqual([3]);
    sm.apply(4, { type: "markEventsPublished", requestId: "e2", ts, throughIndex: 2 });
    expect(sm.events.map((e) => e.index)).toEqual([3]);
    sm.apply(5, { type: "markEventsPublished", requestId: "e3", ts, throughIndex: 3 });
    expect(sm.events).toEqual([]);
  });

  it("the cursor never passes the entries applied before the mark", () => {
    const sm = machineWithLowStock();
    // A mark naming index 9, applied at 4: only entries up to 3 can have been seen by its leader.
    sm.apply(4, { type: "markEventsPublished", requestId: "e9", ts, throughIndex: 9 });
    sm.apply(5, { type: "restock", requestId: "r5", quantity: 10, ...base });
    sm.apply(6, { type: "deduct", requestId: "r6", quantity: 10, ...base });
    expect(sm.events.map((e) => e.index)).toEqual([6]);
  });

  it("a snapshot carries the pending events and the cursor; one written before them restores empty", () => {
    const sm = machineWithLowStock();
    const restored = new InventoryStateMachine();
    restored.restore(sm.snapshot());
    expect(restored.events).toEqual(sm.events);
    restored.apply(4, { type: "markEventsPublished", requestId: "e3", ts, throughIndex: 3 });
    const again = new InventoryStateMachine();
    again.restore(restored.snapshot());
    expect(again.events).toEqual([]);
    const old = JSON.parse(new TextDecoder().decode(sm.snapshot()));
    delete old.events;
    delete old.eventCursor;
    delete old.eventsDropped;
    const fromOld = new InventoryStateMachine();
    fromOld.restore(new TextEncoder().encode(JSON.stringify(old)));
    expect(fromOld.events).toEqual([]);
  });

  it("the command's hand-written check agrees with its schema", () => {
    const good = { type: "markEventsPublished", requestId: "e1", ts, throughIndex: 7 };
    for (const c of [
      good,
      { ...good, throughIndex: 0 },
      { ...good, throughIndex: 1.5 },
      { ...good, extra: 1 },
    ]) {
      expect(isCommand(c), JSON.stringify(c)).toBe(commandSchema.safeParse(c).success);
    }
    expect(isCommand(good)).toBe(true);
  });
});
