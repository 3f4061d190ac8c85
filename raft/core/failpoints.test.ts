// The core's two failpoints (RaftFailpoints in raft/node/node.ts reach it as testOnlyBugs), each on
// a scripted network beside the correct behaviour: commitWithoutQuorum lets a cut-off leader commit
// alone; replicateOnTickOnly holds new entries back until a heartbeat tick (every fourth). The chaos
// harness shows both are caught (jepsen-lite/mutation.test.ts); this shows each does only that.
import { describe, expect, it } from "vitest";
import { TestNet } from "./testing.ts";

const enc = new TextEncoder();

function elected(bugs = {}) {
  const net = new TestNet(["s1", "s2", "s3"], { testOnlyBugs: bugs });
  net.elect("s1");
  net.deliverAll();
  return net;
}

describe("core failpoints", () => {
  it("commitWithoutQuorum: an isolated leader commits its own entry alone; a correct one does not", () => {
    for (const bug of [false, true]) {
      const net = elected({ commitWithoutQuorum: bug });
      const before = net.core("s1").committed;
      net.isolate("s1");
      const { index } = net.propose("s1", enc.encode("x"));
      net.deliverAll();
      expect(net.core("s1").committed, `bug ${bug}`).toBe(bug ? index : before);
      // The followers never saw it, whatever the leader believes.
      expect(net.disks.get("s2")!.lastIndex()).toBeLessThan(index);
    }
  });

  it("replicateOnTickOnly: a new entry leaves only with a later heartbeat tick (every fourth), then commits", () => {
    const appendsOut = (net: TestNet) =>
      net.queue.filter((m) => m.type === "app" && m.entries.length > 0).length;
    const correct = elected();
    correct.propose("s1", enc.encode("x"));
    expect(appendsOut(correct)).toBe(2);

    const lazy = elected({ replicateOnTickOnly: true });
    const { index } = lazy.propose("s1", enc.encode("x"));
    let ticks = 0;
    while (appendsOut(lazy) === 0 && ticks < 10) {
      lazy.tick("s1");
      ticks++;
    }
    expect(appendsOut(lazy)).toBe(2);
    expect(ticks).toBeGreaterThanOrEqual(1);
    expect(ticks).toBeLessThanOrEqual(4);
    // Once it leaves it is committed as usual: the bug delays replication, it does not lose it.
    lazy.deliverAll();
    expect(lazy.core("s1").committed).toBe(index);
  });
});
