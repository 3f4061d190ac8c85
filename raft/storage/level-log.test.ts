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
