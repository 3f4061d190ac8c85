// The client pool's own rules, with stand-in clients that only record being closed: a retry never
// lands on an instance its call already tried while another is left, even with concurrent calls
// sharing the cursor; removed clients close after the grace, the rest at close(); none is UNAVAILABLE.
import { describe, expect, it } from "vitest";
import { ClientPool } from "./client-pool.ts";
import { AppError } from "./errors.ts";

class Fake {
  closed = false;
  constructor(readonly address: string) {}
  close() {
    this.closed = true;
  }
}

describe("ClientPool", () => {
  it("skips the clients a call already tried, whatever other calls picked meanwhile", () => {
    const pool = new ClientPool("appointment", (a) => new Fake(a), ["a:1", "b:1", "c:1"], 10);
    for (let round = 0; round < 20; round++) {
      const tried = new Set<Fake>();
      const first = pool.pick(tried);
      tried.add(first);
      pool.pick(); // another call's try moves the shared cursor
      const second = pool.pick(tried);
      tried.add(second);
      pool.pick();
      pool.pick();
      const third = pool.pick(tried);
      expect(new Set([first, second, third]).size).toBe(3);
      tried.add(third);
      // All tried: round-robin again rather than nothing.
      expect(pool.pick(tried)).toBeInstanceOf(Fake);
    }
  });

  it("adds and removes addresses; a removed client closes after the grace, the others at close()", async () => {
    const made: Fake[] = [];
    const pool = new ClientPool(
      "medication",
      (a) => {
        const f = new Fake(a);
        made.push(f);
        return f;
      },
      ["a:1", "b:1"],
      50,
    );
    expect(pool.setAddresses(["b:1", "c:1"])).toEqual({ added: ["c:1"], removed: ["a:1"] });
    expect(pool.addresses().sort()).toEqual(["b:1", "c:1"]);
    const a = made.find((f) => f.address === "a:1")!;
    expect(a.closed).toBe(false);
    const deadline = Date.now() + 10_000;
    while (!a.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(a.closed).toBe(true);
    const picked = new Set(Array.from({ length: 4 }, () => pool.pick().address));
    expect([...picked].sort()).toEqual(["b:1", "c:1"]);
    pool.setAddresses(["c:1"]);
    pool.close();
    expect(made.every((f) => f.closed)).toBe(true);
  });

  it("with no instance known, a pick is UNAVAILABLE (retryable, then 503)", () => {
    const pool = new ClientPool("notification", (a) => new Fake(a), [], 10);
    expect(() => pool.pick()).toThrow(AppError);
    try {
      pool.pick();
    } catch (err) {
      expect((err as AppError).code).toBe("UNAVAILABLE");
    }
    pool.setAddresses(["n:1"]);
    expect(pool.pick().address).toBe("n:1");
  });
});
