// The simulated disk keeps what a real one keeps through a power cut: every synced write and a
// prefix (in write order) of the rest; and the Raft log on it recovers to a state it once was in.
import { describe, expect, it } from "vitest";
import type { Scheduler } from "../node/scheduler.ts";
import { Life, VirtualTime } from "../sim/node/virtual-time.ts";
import { mulberry32 } from "../sim/prng.ts";
import { LevelLog } from "./level-log.ts";
import { MemoryDisk } from "./memory-kv.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("MemoryDisk", () => {
  it("a crash keeps synced writes and a prefix of the unsynced ones, never a later one without an earlier", async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const disk = new MemoryDisk();
      const kv = disk.open();
      await kv.put("a", bytes("1"), { sync: true });
      // Without a clock every write lands at once: open a clocked handle whose writes stay pending.
      const time = new VirtualTime();
      const life = new Life("p");
      const clocked = disk.open(time.scheduler(life, mulberry32(seed)));
      void clocked.put("b", bytes("2"), { sync: false });
      void clocked.put("c", bytes("3"), { sync: false });
      void clocked.put("d", bytes("4"), { sync: true }); // issued, its fsync never completes
      life.dead = true;
      disk.crash(mulberry32(seed * 7));
      const kept = disk.durableKeys();
      expect(kept[0]).toBe("a");
      expect(["a", "b", "c", "d"].slice(0, kept.length)).toEqual(kept);
    }
  });

  it("a completed fsync makes it and everything before it durable", async () => {
    const disk = new MemoryDisk({ writeMs: 1, syncMsMin: 2, syncMsMax: 2 });
    const time = new VirtualTime();
    const life = new Life("p");
    const kv = disk.open(time.scheduler(life, mulberry32(1)));
    void kv.put("x", bytes("1"), { sync: false });
    const synced = kv.put("y", bytes("2"), { sync: true });
    await time.runUntil(10);
    await synced;
    disk.crash(() => 0); // keeps no unsynced write: only durable ones survive
    expect(disk.durableKeys()).toEqual(["x", "y"]);
  });

  it("LevelLog on it: entries acknowledged by write() survive a crash; the hard state never runs ahead of them", async () => {
    for (let seed = 1; seed <= 100; seed++) {
      const disk = new MemoryDisk({ writeMs: 0.05, syncMsMin: 1, syncMsMax: 5 });
      const time = new VirtualTime();
      const life = new Life("p");
      const clock: Scheduler = time.scheduler(life, mulberry32(seed));
      const opened = LevelLog.openOn(disk.open(clock));
      await time.runUntil(1);
      const log = await opened;
      let durable = 0;
      for (let i = 1; i <= 20; i++) {
        log
          .write({
            entries: [{ index: i, term: 1, type: 0, data: bytes(`e${i}`) }],
            hardState: { term: 1, vote: "p", commit: Math.max(0, i - 2) },
          })
          .then(() => {
            durable = i;
          });
      }
      await time.runUntil(1 + mulberry32(seed)() * 60);
      life.dead = true;
      disk.crash(mulberry32(seed * 13));
      const again = await LevelLog.openOn(disk.open());
      expect(again.lastIndex()).toBeGreaterThanOrEqual(durable);
      expect(again.hardState.commit).toBeLessThanOrEqual(again.lastIndex());
      for (let i = 1; i <= again.lastIndex(); i++) {
        expect(new TextDecoder().decode(again.slice(i, i + 1)[0]!.data)).toBe(`e${i}`);
      }
    }
  });
});
