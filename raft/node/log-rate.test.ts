// The node's warnings about malformed or refused peer input are rate-limited (one line a second),
// but the first one is always written — also in a process's first second, when the scheduler's
// clock (process uptime in production, virtual time in the simulator) is still near 0.
import { expect, it } from "vitest";
import { Life, VirtualTime } from "../sim/node/virtual-time.ts";
import { mulberry32 } from "../sim/prng.ts";
import { LevelLog } from "../storage/level-log.ts";
import { MemoryDisk } from "../storage/memory-kv.ts";
import { MemorySnapshots } from "../storage/memory-snapshots.ts";
import { RaftNode } from "./node.ts";

it("the first malformed message is logged even at clock 0", async () => {
  const time = new VirtualTime();
  const clock = time.scheduler(new Life("a#1"), mulberry32(1));
  const warnings: string[] = [];
  const disk = new MemoryDisk();
  const node = new RaftNode({
    id: "a",
    voters: ["a", "b", "c"],
    dataDir: "",
    openLog: () => LevelLog.openOn(disk.open(clock)),
    snapshots: new MemorySnapshots().open(clock),
    scheduler: clock,
    fsm: { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => undefined },
    log: { info() {}, warn: (_o, msg) => void warnings.push(msg), error() {} },
    transport: { send() {}, hello() {} },
  });
  const started = node.start();
  await time.runUntil(5);
  await started;
  const env = { clusterId: "raft", fromIncarnation: "", toIncarnation: "", hello: false };
  // The first batch from a peer is refused quietly while its incarnation is recorded ("pending");
  // the ones after it are refused or dropped loudly.
  for (let t = 10; t <= 30; t += 10) {
    node.receive("b", env, [{ type: "nonsense", from: "b", to: "a" }]);
    await time.runUntil(t);
  }
  expect(node.stats.malformedMessages + node.stats.refusedBatches).toBeGreaterThan(0);
  expect(warnings.length).toBeGreaterThan(0);
});
