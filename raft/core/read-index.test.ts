// ReadIndex (§6.4) at the leader, on a scripted network: a read is confirmed only by a heartbeat
// round sent after it arrived, a request that reuses a context (a restarted requester) is a new
// request, reads arriving together share one round, a lost round is retried by the next heartbeat,
// and pending reads expire and are bounded.
import { describe, expect, it } from "vitest";
import { TestNet } from "./testing.ts";
import { emptyMessage, type Message } from "./types.ts";

const enc = new TextEncoder();

function three(opts = {}) {
  const net = new TestNet(["s1", "s2", "s3"], opts);
  net.elect("s1");
  net.propose("s1", enc.encode("x"));
  net.deliverAll();
  expect(net.core("s1").committed).toBe(2);
  return net;
}

/** Delivers everything, but moves messages matching `hold` aside instead of delivering them. */
function deliverHolding(net: TestNet, hold: (m: Message) => boolean, held: Message[]): void {
  net.flushAll();
  for (let n = 0; net.queue.length > 0; n++) {
    if (n > 10_000) throw new Error("network does not quiesce");
    const m = net.queue.shift()!;
    if (hold(m)) {
      held.push(m);
      continue;
    }
    if (!net.isUp(m.to)) continue;
    net.core(m.to).step(m);
    net.flush(m.to);
  }
}

function deliver(net: TestNet, ms: Message[]): void {
  for (const m of ms.splice(0)) {
    if (!net.isUp(m.to)) continue;
    net.core(m.to).step(m);
    net.flush(m.to);
  }
  net.deliverAll();
}

describe("ReadIndex at the leader", () => {
  it("a restarted follower reusing a read context is not answered with the old request's index", () => {
    const net = three();
    // s2 forwards read "s2/1"; the leader's heartbeat round reaches s2 and s3, but their answers
    // are delayed.
    net.core("s2").readIndex("s2/1");
    const held: Message[] = [];
    deliverHolding(net, (m) => m.type === "heartbeatResp", held);
    expect(held.length).toBe(2);
    // s2 restarts (its process starts counting contexts from 0 again) and a write is acknowledged.
    net.crash("s2");
    net.start("s2");
    net.propose("s1", enc.encode("y"));
    net.deliverAll();
    expect(net.core("s1").committed).toBe(3);
    // The new process issues "s2/1" again, after the write at 3 was acknowledged.
    net.core("s2").readIndex("s2/1");
    net.flush("s2");
    net.deliverAll();
    // The old round's answers arrive; then the leader keeps heartbeating.
    deliver(net, held);
    for (let i = 0; i < 3; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    const got = net.readStates.get("s2")!;
    expect(got.filter((r) => r.index < 3)).toEqual([]);
    expect(got).toEqual([{ index: 3, context: "s2/1" }]);
  });

  it("a heartbeat answer from a round sent before a read arrived does not confirm it", () => {
    const net = three();
    net.core("s1").readIndex("r1");
    const held: Message[] = [];
    deliverHolding(net, (m) => m.type === "heartbeatResp", held);
    net.propose("s1", enc.encode("y"));
    net.deliverAll();
    net.core("s1").readIndex("r2");
    net.flush("s1");
    // Only the old round's answers: r1 is confirmed, r2 (index 3) is not.
    const fresh: Message[] = [];
    deliverHolding(net, (m) => m.type === "heartbeat", fresh);
    deliver(net, held);
    expect(net.readStates.get("s1")).toEqual([{ index: 2, context: "r1" }]);
    deliver(net, fresh);
    expect(net.readStates.get("s1")).toEqual([
      { index: 2, context: "r1" },
      { index: 3, context: "r2" },
    ]);
  });

  it("reads arriving together share one heartbeat round", () => {
    const net = three();
    const l = net.core("s1");
    l.readIndex("a");
    l.readIndex("b");
    net.core("s2").readIndex("c");
    net.core("s3").readIndex("d");
    net.flush("s2");
    net.flush("s3");
    // Both forwards reach the leader before its next Ready.
    for (const m of net.queue.splice(0)) l.step(m);
    net.flush("s1");
    const heartbeats = net.queue.filter((m) => m.type === "heartbeat");
    expect(heartbeats.length).toBe(2);
    net.deliverAll();
    expect(net.readStates.get("s1")).toEqual([
      { index: 2, context: "a" },
      { index: 2, context: "b" },
    ]);
    expect(net.readStates.get("s2")).toEqual([{ index: 2, context: "c" }]);
    expect(net.readStates.get("s3")).toEqual([{ index: 2, context: "d" }]);
  });

  it("a read whose heartbeat round was lost is confirmed by the next heartbeat", () => {
    const net = three();
    net.core("s1").readIndex("r1");
    net.flush("s1");
    net.dropQueued((m) => m.type === "heartbeat");
    net.deliverAll();
    expect(net.readStates.get("s1")).toEqual([]);
    net.tick("s1");
    net.deliverAll();
    expect(net.readStates.get("s1")).toEqual([{ index: 2, context: "r1" }]);
  });

  it("a pending read expires after readTimeoutTicks and is never answered afterwards", () => {
    const net = three({ readTimeoutTicks: 5 });
    const l = net.core("s1");
    net.isolate("s1");
    l.readIndex("r1");
    net.deliverAll();
    expect(l.status().readsPending).toBe(1);
    net.tick("s1", 4);
    expect(l.status().readsPending).toBe(1);
    net.tick("s1", 1);
    expect(l.status().readsPending).toBe(0);
    net.heal();
    for (let i = 0; i < 3; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    expect(net.readStates.get("s1")).toEqual([]);
  });

  it("pending reads are bounded: a local read beyond readsPendingMax fails fast, a forwarded one is dropped", () => {
    const net = three({ readsPendingMax: 2 });
    const l = net.core("s1");
    net.isolate("s1");
    l.readIndex("r1");
    l.readIndex("r2");
    expect(() => l.readIndex("r3")).toThrow(expect.objectContaining({ code: "READ_QUEUE_FULL" }));
    l.step({ ...emptyMessage("readIndex", "s2", "s1", l.currentTerm), context: "f1" });
    expect(l.status().readsPending).toBe(2);
    net.deliverAll();
    net.heal();
    net.tick("s1");
    net.deliverAll();
    expect(net.readStates.get("s1")).toEqual([
      { index: 2, context: "r1" },
      { index: 2, context: "r2" },
    ]);
    expect(net.readStates.get("s2")).toEqual([]);
  });
});
