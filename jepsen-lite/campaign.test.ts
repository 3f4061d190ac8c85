// A short campaign inside npm test: one `stock` run against a real 3-replica cluster with a leader
// kill and a leader partition. It must check linearizable, and it must not pass vacuously: writes
// were acknowledged inside each fault window and after the last heal, and the checker does reject
// this very history once one of its reads is falsified. A second run reads stale state on purpose
// (a bug planted on the client side) and must be caught. Then one short `bank` run under random
// halves and one short `booking` run under a Redis restart and a FLUSHALL, each held to the same
// standard: the faults happened, answers came inside the windows, and the checker rejects the
// history once one answer is falsified.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runDefaults, runOnce } from "./run.ts";
import { type BankOp, bankDefaults, checkBank } from "./workloads/bank.ts";
import { type BookingOp, checkBooking } from "./workloads/booking.ts";
import { checkStock, type StockOp } from "./workloads/stock.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "jepsen-lite-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const isAckedWrite = (op: { input: { f: string }; output?: { ok: boolean } }) =>
  op.input.f !== "read" && op.output?.ok === true;

describe("jepsen-lite campaign", { timeout: 120_000 }, () => {
  it("stock under a leader kill and a leader partition: linearizable, with writes acknowledged during and after the faults", async () => {
    const r = await runOnce({
      ...runDefaults,
      faults: ["kill", "partition"],
      timeMs: 12_000,
      quietMs: 1_500,
      faultMs: 3_000,
      holdAfterLeaderMs: 1_500,
      tailMs: 2_500,
      // Short, so that a write caught by a fault can go unanswered and the checker has to place it
      // (how many do varies from run to run: often none, as the client fails over within it).
      opDeadlineMs: 700,
      seed: 10,
      storeRoot: root,
      name: "jepsen_campaign",
    });
    expect(r.check.failure).toBeUndefined();
    expect(r.check.result).toBe("ok");
    expect(r.valid).toBe("ok");

    // Both faults happened, and the rest of the cluster elected a leader inside each window.
    expect(r.faults.map((f) => f.kind).sort()).toEqual(["kill", "partition"]);
    for (const f of r.faults) {
      expect(f.leaderAfterMs).toBeGreaterThanOrEqual(0);
      const during = r.history.filter((op) => isAckedWrite(op) && op.call >= f.start && op.ret <= f.end);
      expect(during.length, `acknowledged writes during ${f.kind}`).toBeGreaterThan(0);
    }
    // Raft really went through the proxies: the first leader's heartbeats and its followers'
    // answers crossed all four of its links.
    expect(r.links).toHaveLength(6);
    const linksOf = (id: string) => r.links.filter((l) => l.link.split(">").includes(id));
    for (const l of linksOf(r.faults[0]!.leaderBefore)) expect(l.bytesForwarded, l.link).toBeGreaterThan(0);
    // And the partition really cut the isolated leader off: what it sent to both peers was dropped,
    // and so was what the new leader sent it.
    const isolated = r.faults.find((f) => f.kind === "partition")!.target;
    const out = linksOf(isolated).filter((l) => l.link.startsWith(`${isolated}>`));
    expect(out).toHaveLength(2);
    for (const l of out) expect(l.bytesDropped, l.link).toBeGreaterThan(0);
    const into = linksOf(isolated).filter((l) => l.link.endsWith(`>${isolated}`));
    expect(into.some((l) => l.bytesDropped > 0)).toBe(true);
    const lastHeal = Math.max(...r.faults.map((f) => f.end));
    expect(r.history.filter((op) => isAckedWrite(op) && op.call > lastHeal).length).toBeGreaterThan(0);
    expect(r.livenessMs).toBeGreaterThanOrEqual(0);
    expect(r.livenessMs).toBeLessThan(runDefaults.livenessBoundMs);

    // The store holds the history and the verdict.
    const lines = readFileSync(path.join(r.dir, "history.jsonl"), "utf8").trim().split("\n");
    expect(lines.length).toBe(r.ops + r.faults.length);
    const results = JSON.parse(readFileSync(path.join(r.dir, "results.json"), "utf8"));
    expect(results.valid).toBe("ok");
    expect(results.check.result).toBe("ok");

    // The checker looks at this history: one read raised beyond any reachable stock is caught.
    const history = r.history as StockOp[];
    const read = history.findLast((op) => op.input.f === "read" && op.output?.ok === true)!;
    const falsified = history.map((op) =>
      op === read ? { ...op, output: { ok: true as const, quantity: 1_000_000 } } : op,
    );
    const bad = checkStock(falsified, 10_000);
    expect(bad.result).toBe("fail");
    expect(bad.failure?.key).toBe(read.key);
  });

  it("with stale reads (any replica's applied state) and a one-way partition of the leader it fails, on a read", async () => {
    const r = await runOnce({
      ...runDefaults,
      faults: ["oneway"],
      timeMs: 4_000,
      quietMs: 1_000,
      faultMs: 2_500,
      holdAfterLeaderMs: 1_000,
      tailMs: 1_000,
      seed: 11,
      storeRoot: root,
      name: "jepsen_campaign_stale",
      workloadOptions: { staleReads: true },
    });
    expect(r.check.result).toBe("fail");
    // The leader that could send but not receive was deposed: the others elected one in the window.
    expect(r.faults.map((f) => f.kind)).toEqual(["oneway"]);
    expect(r.faults[0]!.leaderAfterMs).toBeGreaterThanOrEqual(0);
    expect(r.livenessMs).toBeGreaterThanOrEqual(0);
    const blocked = r.history.find((op) => op.id === r.check.failure!.blocked)!;
    expect(blocked.input.f).toBe("read");
    expect(r.check.failure!.explanation).toMatch(/it read \d+, but the quantity was \d+/);
  });

  it("bank under random halves: linearizable as one key, total kept, transfers acknowledged during the cut", async () => {
    const r = await runOnce({
      ...runDefaults,
      workload: "bank",
      faults: ["halves"],
      timeMs: 4_000,
      quietMs: 800,
      faultMs: 2_000,
      holdAfterLeaderMs: 800,
      tailMs: 1_000,
      opDeadlineMs: 700,
      seed: 12,
      storeRoot: root,
      name: "jepsen_campaign_bank",
      // Little in each account, so that refusals (INSUFFICIENT_STOCK) are common and checked too.
      workloadOptions: { initial: 6 },
    });
    expect(r.check.failure).toBeUndefined();
    expect(r.valid).toBe("ok");
    // One key: the balance vector (a transfer touches two accounts).
    expect(r.check.keys.map((k) => k.key)).toEqual(["bank"]);
    const [f] = r.faults;
    expect(r.faults.map((x) => x.kind)).toEqual(["halves"]);
    expect(f!.healthBefore?.writeMs).toBeGreaterThanOrEqual(0);
    expect(f!.healthAfter?.writeMs).toBeGreaterThanOrEqual(0);
    expect(f!.leaderAfterMs).toBeGreaterThanOrEqual(0);
    // The halves really were cut from each other: what the leader sent across was dropped.
    const halves = f!.target.split("|").map((h) => h.split(","));
    const leader = f!.leaderBefore;
    const across = halves.find((h) => !h.includes(leader))!;
    for (const x of across) {
      const l = r.links.find((y) => y.link === `${leader}>${x}`)!;
      expect(l.bytesDropped, l.link).toBeGreaterThan(0);
    }
    const history = r.history as BankOp[];
    const transfers = history.filter(
      (op) => op.input.f === "transfer" && op.output?.ok === true && op.call >= f!.start && op.ret <= f!.end,
    );
    expect(transfers.length, "transfers acknowledged during the cut").toBeGreaterThan(0);
    expect(history.some((op) => op.input.f === "transfer" && op.output?.ok === false)).toBe(true);
    expect(r.livenessMs).toBeGreaterThanOrEqual(0);
    // The final balances were read and add up.
    const finals = history.slice(-bankDefaults.accounts);
    expect(finals.every((op) => op.input.f === "read" && op.output?.ok)).toBe(true);
    // The checker looks at this history: a read no transfer could have changed under (none overlaps
    // it, none unanswered before it), moved by one unit, is caught.
    const transfersAll = history.filter((op) => op.input.f === "transfer");
    const read = history.findLast(
      (op) =>
        op.input.f === "read" &&
        op.output?.ok === true &&
        !transfersAll.some((t) => t.call < op.ret && t.ret > op.call),
    )!;
    expect(read).toBeDefined();
    const out = read.output as { ok: true; balance: number };
    const moved = out.balance > 0 ? out.balance - 1 : out.balance + 1;
    const falsified = history.map((op) =>
      op === read ? { ...op, output: { ok: true as const, balance: moved } } : op,
    );
    expect(checkBank(falsified, { ...bankDefaults, initial: 6 }, 10_000).result).toBe("fail");
  });

  it("booking under a Redis restart and a FLUSHALL: no double booking, no read shows an acknowledged booking's slot free", async () => {
    const r = await runOnce({
      ...runDefaults,
      workload: "booking",
      faults: ["redis-restart", "redis-flush"],
      timeMs: 3_000,
      quietMs: 600,
      faultMs: 1_200,
      holdAfterLeaderMs: 0,
      tailMs: 800,
      opDeadlineMs: 700,
      seed: 13,
      storeRoot: root,
      name: "jepsen_campaign_booking",
    });
    expect(r.check.failure).toBeUndefined();
    expect(r.valid).toBe("ok");
    expect(r.faults.map((f) => f.kind).sort()).toEqual(["redis-flush", "redis-restart"]);
    for (const f of r.faults)
      expect(f.healthBefore?.writeMs, `health before ${f.kind}`).toBeGreaterThanOrEqual(0);
    const history = r.history as BookingOp[];
    const acked = (op: BookingOp, f: string) => op.input.f === f && op.output?.ok === true;
    // While Redis was down, reads were still answered (from PostgreSQL: tier 3).
    const down = r.faults.find((f) => f.kind === "redis-restart")!;
    const dbReads = history.filter(
      (op) =>
        acked(op, "read") &&
        op.call >= down.start &&
        op.ret <= down.end &&
        (op.output as { tier: number }).tier === 3,
    );
    expect(dbReads.length, "reads answered from PostgreSQL while Redis was down").toBeGreaterThan(0);
    const flush = r.faults.find((f) => f.kind === "redis-flush")!;
    expect(
      history.filter((op) => acked(op, "book") && op.call >= flush.start && op.ret <= flush.end).length,
    ).toBeGreaterThan(0);
    expect(history.filter((op) => acked(op, "cancel")).length).toBeGreaterThan(0);
    const lastHeal = Math.max(...r.faults.map((f) => f.end));
    expect(history.filter((op) => acked(op, "book") && op.call > lastHeal).length).toBeGreaterThan(0);
    expect(r.livenessMs).toBeGreaterThanOrEqual(0);

    // The promise was really put to the test: reads that started after an acknowledged booking
    // (never cancelled before they ended) of a slot they show booked. Falsify one: caught.
    const books = history.filter((op) => acked(op, "book")) as (BookingOp & {
      input: { f: "book"; slot: number };
    })[];
    const tested = history.filter(
      (rd) =>
        acked(rd, "read") &&
        books.some(
          (b) =>
            b.ret < rd.call &&
            !history.some(
              (c) =>
                c.input.f === "cancel" &&
                c.input.appointmentId === (b.output as { appointmentId: string }).appointmentId &&
                c.call < rd.ret,
            ),
        ),
    );
    expect(tested.length).toBeGreaterThan(0);
    const victim = tested.at(-1)!;
    const b = books.find(
      (b) =>
        b.ret < victim.call &&
        !history.some(
          (c) =>
            c.input.f === "cancel" &&
            c.input.appointmentId === (b.output as { appointmentId: string }).appointmentId &&
            c.call < victim.ret,
        ),
    )!;
    const out = victim.output as { ok: true; free: number[]; instance: number; tier: number };
    const falsified = history.map((op) =>
      op === victim ? { ...op, output: { ...out, free: [...out.free, b.input.slot] } } : op,
    );
    const bad = checkBooking(falsified, [], [], undefined);
    expect(bad.result).toBe("fail");
    expect(bad.failure?.explanation).toMatch(/shows the slot free/);
  });
});
