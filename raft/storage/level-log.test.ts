import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { LevelLog, type StoredEntry } from "./level-log.ts";

const dirs: string[] = [];
const fresh = () => {
  const d = mkdtempSync(join(tmpdir(), "medisync-levellog-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const entry = (index: number, term: number, text = `cmd-${index}-${term}`): StoredEntry => ({
  index,
  term,
  type: 0,
  data: new TextEncoder().encode(text),
});

describe("LevelLog", () => {
  it("keeps entries and hard state across a reopen", async () => {
    const dir = fresh();
    const log = await LevelLog.open(dir);
    await log.write({
      entries: [entry(1, 1), entry(2, 1), entry(3, 2)],
      hardState: { term: 2, vote: "n1", commit: 2 },
    });
    await log.close();
    const again = await LevelLog.open(dir);
    expect(again.lastIndex()).toBe(3);
    expect(again.term(3)).toBe(2);
    expect(again.hardState).toEqual({ term: 2, vote: "n1", commit: 2 });
    expect(new TextDecoder().decode(again.slice(2, 3)[0]!.data)).toBe("cmd-2-1");
    await again.close();
  });

  it("a commit-only change costs no disk write; it lands with the next entries, never past them", async () => {
    const dir = fresh();
    const log = await LevelLog.open(dir);
    await log.write({ entries: [entry(1, 1), entry(2, 1)], hardState: { term: 1, vote: "n1", commit: 0 } });
    const syncs = log.syncs;
    await log.write({ hardState: { term: 1, vote: "n1", commit: 2 } });
    expect(log.syncs).toBe(syncs);
    expect(log.hardState.commit).toBe(2); // the mirror has it at once
    await log.close();
    const reopened = await LevelLog.open(dir);
    expect(reopened.hardState).toEqual({ term: 1, vote: "n1", commit: 0 }); // volatile: not on disk
    // The next entries carry the newest commit along; a term change is written (and synced) alone.
    await reopened.write({ hardState: { term: 1, vote: "n1", commit: 2 } });
    await reopened.write({ entries: [entry(3, 1)] });
    await reopened.write({ hardState: { term: 2, vote: "", commit: 2 } });
    await reopened.close();
    const again = await LevelLog.open(dir);
    expect(again.hardState).toEqual({ term: 2, vote: "", commit: 2 });
    expect(again.lastIndex()).toBe(3);
    await again.close();
  });

  it("truncates a conflicting suffix, on disk too", async () => {
    const dir = fresh();
    const log = await LevelLog.open(dir);
    await log.write({ entries: [1, 2, 3, 4, 5].map((i) => entry(i, 1)) });
    await log.write({ entries: [entry(3, 2)] });
    expect(log.lastIndex()).toBe(3);
    await log.close();
    const again = await LevelLog.open(dir);
    expect(again.lastIndex()).toBe(3);
    expect(again.term(3)).toBe(2);
    expect(again.term(4)).toBeUndefined();
    await again.close();
  });

  it("group commit: writes issued together share fsyncs", async () => {
    const log = await LevelLog.open(fresh());
    const writes = Array.from({ length: 200 }, (_, k) => log.write({ entries: [entry(k + 1, 1)] }));
    await Promise.all(writes);
    expect(log.lastIndex()).toBe(200);
    expect(log.syncs).toBeLessThan(200);
    expect(log.syncs).toBeGreaterThan(0);
    await log.close();
  });

  it("compaction drops the prefix and survives a reopen", async () => {
    const dir = fresh();
    const log = await LevelLog.open(dir);
    await log.write({ entries: Array.from({ length: 10 }, (_, k) => entry(k + 1, 1 + Math.floor(k / 5))) });
    await log.compact({ index: 6, term: 2 });
    expect(log.firstIndex()).toBe(7);
    expect(log.term(6)).toBe(2);
    expect(() => log.slice(5, 7)).toThrow();
    await log.close();
    const again = await LevelLog.open(dir);
    expect([again.firstIndex(), again.lastIndex()]).toEqual([7, 10]);
    await again.write({ entries: [entry(11, 3)] });
    expect(again.slice(7, 12).map((e) => e.index)).toEqual([7, 8, 9, 10, 11]);
    await again.close();
  });

  it("slice honours a byte budget but always returns one entry", async () => {
    const log = await LevelLog.open(fresh());
    await log.write({ entries: [entry(1, 1, "x".repeat(100)), entry(2, 1, "y".repeat(100))] });
    expect(log.slice(1, 3, 10).map((e) => e.index)).toEqual([1]);
    expect(log.slice(1, 3, 250).map((e) => e.index)).toEqual([1, 2]);
    await log.close();
  });

  it("refuses a gap (a caller bug stops loudly)", async () => {
    const log = await LevelLog.open(fresh());
    expect(() => log.write({ entries: [entry(3, 1)] })).toThrow(/gap/);
    await log.close();
  });

  it("property: whatever sequence of appends and overwrites, the reopened log equals the mirror", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ back: fc.nat(4), count: fc.integer({ min: 1, max: 4 }) }), {
          minLength: 1,
          maxLength: 12,
        }),
        async (ops) => {
          const dir = fresh();
          const log = await LevelLog.open(dir);
          let term = 1;
          const pending: Promise<void>[] = [];
          for (const op of ops) {
            const start = Math.max(1, log.lastIndex() + 1 - op.back);
            term++;
            pending.push(
              log.write({ entries: Array.from({ length: op.count }, (_, k) => entry(start + k, term)) }),
            );
          }
          await Promise.all(pending);
          const want = log.slice(1, log.lastIndex() + 1).map((e) => [e.index, e.term]);
          await log.close();
          const again = await LevelLog.open(dir);
          expect(again.slice(1, again.lastIndex() + 1).map((e) => [e.index, e.term])).toEqual(want);
          await again.close();
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("LevelLog: writes, compaction and reset share one queue", () => {
  /** Reads back every durable fact a restart would see. */
  const durable = async (dir: string) => {
    const log = await LevelLog.open(dir);
    const out = {
      compactedTo: log.compactedTo,
      entries: log.slice(log.firstIndex(), log.lastIndex() + 1).map((e) => [e.index, e.term]),
      hard: log.hardState,
    };
    await log.close();
    return out;
  };
  const mirror = (log: LevelLog) => ({
    compactedTo: log.compactedTo,
    entries: log.slice(log.firstIndex(), log.lastIndex() + 1).map((e) => [e.index, e.term]),
  });

  it("the node's sequence: compaction to the last index (keep 0) in flight, reset, then new entries", async () => {
    // RAFT_SNAPSHOT_KEEP_ENTRIES=0: the compaction empties the mirror; a snapshot from the leader
    // then resets the log and the next entries follow it. None of them may be lost on disk.
    for (let round = 0; round < 10; round++) {
      const dir = fresh();
      const log = await LevelLog.open(dir);
      await log.write({
        entries: Array.from({ length: 10 }, (_, k) => entry(k + 1, 1)),
        hardState: { term: 1, vote: "n1", commit: 10 },
      });
      const compaction = log.compact({ index: 10, term: 1 }); // not awaited, as the node does
      await log.reset({ index: 20, term: 2 });
      await log.write({
        entries: [entry(21, 2), entry(22, 2)],
        hardState: { term: 2, vote: "", commit: 22 },
      });
      await compaction;
      const want = mirror(log);
      expect(want).toEqual({
        compactedTo: { index: 20, term: 2 },
        entries: [
          [21, 2],
          [22, 2],
        ],
      });
      await log.close();
      expect(await durable(dir)).toMatchObject(want);
    }
  });

  it("property: any interleaving of writes, compactions and resets, none awaited, lands on disk as the mirror says", async () => {
    type Op =
      | { kind: "append"; count: number }
      | { kind: "overwrite"; back: number; count: number }
      | { kind: "compact"; keep: number }
      | { kind: "reset"; ahead: number };
    const op = fc.oneof(
      fc.record({ kind: fc.constant("append" as const), count: fc.integer({ min: 1, max: 4 }) }),
      fc.record({
        kind: fc.constant("overwrite" as const),
        back: fc.integer({ min: 1, max: 4 }),
        count: fc.integer({ min: 1, max: 3 }),
      }),
      fc.record({ kind: fc.constant("compact" as const), keep: fc.nat(3) }),
      fc.record({ kind: fc.constant("reset" as const), ahead: fc.integer({ min: 1, max: 5 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 16 }), async (ops: Op[]) => {
        const dir = fresh();
        const log = await LevelLog.open(dir);
        let term = 1;
        const pending: Promise<void>[] = [];
        for (const o of ops) {
          term++;
          const last = log.lastIndex();
          if (o.kind === "append" || o.kind === "overwrite") {
            const start = o.kind === "append" ? last + 1 : Math.max(log.firstIndex(), last + 1 - o.back);
            pending.push(
              log.write({
                entries: Array.from({ length: o.count }, (_, k) => entry(start + k, term)),
                hardState: { term, vote: "", commit: log.hardState.commit },
              }),
            );
          } else if (o.kind === "compact") {
            const at = last - o.keep;
            if (at > log.compactedTo.index) pending.push(log.compact({ index: at, term: log.term(at)! }));
          } else {
            pending.push(log.reset({ index: last + o.ahead, term }));
          }
        }
        await Promise.all(pending);
        const want = mirror(log);
        await log.close();
        expect(await durable(dir)).toMatchObject(want);
      }),
      { numRuns: 60 },
    );
  });
});
