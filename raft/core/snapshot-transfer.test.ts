// Chunked InstallSnapshot at the leader, on a scripted network: one chunk in flight per follower,
// resent on timeout only — never because a heartbeat answer or a late duplicate arrived.
import { describe, expect, it } from "vitest";
import { TestNet } from "./testing.ts";
import type { Message } from "./types.ts";

const enc = new TextEncoder();
const state = "0123456789abcdefghijklmnopqrstuvwxyz"; // 12 chunks of 3 bytes

/** s1 leads, s3 was down while s1 compacted its log: s3 needs a snapshot of 12 chunks. */
function behind(opts = {}) {
  const net = new TestNet(["s1", "s2", "s3"], {
    snapshotChunkBytesMax: 3,
    snapshotRetransmitTicks: 3,
    ...opts,
  });
  net.elect("s1");
  net.crash("s3");
  for (let i = 0; i < 5; i++) net.propose("s1", enc.encode(`v${i}`));
  net.deliverAll();
  const l = net.core("s1");
  net.disks.get("s1")!.createSnapshot({ meta: l.snapshotMeta(6), data: enc.encode(state) });
  net.start("s3");
  const snaps: Message[] = [];
  return { net, l, snaps };
}

describe("snapshot transfer at the leader", () => {
  it("heartbeat answers resend nothing; an unanswered chunk is resent once per timeout", () => {
    const { net, snaps } = behind();
    net.filter = (m) => {
      if (m.type !== "snap") return true;
      snaps.push(m);
      return false; // every chunk is lost
    };
    net.tick("s1");
    net.deliverAll(); // heartbeat → answer → the transfer starts with chunk 0
    expect(snaps.map((m) => m.offset)).toEqual([0]);
    net.tick("s1");
    net.deliverAll();
    net.tick("s1");
    net.deliverAll(); // two more heartbeat rounds, answered: still one chunk sent
    expect(snaps.map((m) => m.offset)).toEqual([0]);
    net.tick("s1");
    net.deliverAll(); // 3 ticks without an answer: resent
    expect(snaps.map((m) => m.offset)).toEqual([0, 0]);
  });

  it("duplicated chunks and answers do not multiply: 12 chunks, each sent once, snapshot installed", () => {
    const { net, snaps } = behind();
    const copies = new WeakSet<Message>();
    net.filter = (m) => {
      if (copies.has(m)) return true;
      if (m.type === "snap") snaps.push(m);
      // The network delivers every chunk and every answer twice.
      if (m.type === "snap" || m.type === "snapResp") {
        const copy = { ...m };
        copies.add(copy);
        net.queue.push(copy);
      }
      return true;
    };
    for (let i = 0; i < 20; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    expect(net.disks.get("s3")!.snapshot().meta.index).toBe(6);
    expect(new TextDecoder().decode(net.disks.get("s3")!.snapshot().data)).toBe(state);
    const offsets = snaps.map((m) => m.offset);
    expect(offsets).toEqual(Array.from({ length: 12 }, (_, i) => 3 * i));
  });

  it("a follower that lost its partial snapshot (restart) gets the transfer again from 0", () => {
    const { net, snaps } = behind();
    let crashed = false;
    net.filter = (m) => {
      if (m.type === "snap") snaps.push(m);
      if (m.type === "snap" && m.offset === 15 && !crashed) {
        crashed = true;
        net.crash("s3");
        net.start("s3");
      }
      return true;
    };
    for (let i = 0; i < 20; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    expect(new TextDecoder().decode(net.disks.get("s3")!.snapshot().data)).toBe(state);
    // 0..15 once, 15 again after the timeout (rejected: s3 holds nothing), then 0..33.
    expect(snaps.length).toBeLessThanOrEqual(12 + 6 + 1);
  });

  it("the retransmission timeout follows the measured chunk round trip (Karn's rule)", () => {
    const { net, snaps } = behind();
    const held: Message[] = [];
    let dropSecond = true;
    net.filter = (m) => {
      if (m.type === "snap") {
        snaps.push(m);
        if (m.offset === 3 && dropSecond) {
          dropSecond = false;
          return false;
        }
      }
      if (m.type === "snapResp" && m.offset === 3) {
        held.push(m); // the answer to chunk 0 takes 2 ticks
        return false;
      }
      return true;
    };
    net.tick("s1");
    net.deliverAll();
    expect(snaps.map((m) => m.offset)).toEqual([0]);
    net.tick("s1", 2);
    net.deliverAll();
    const s1 = net.core("s1");
    for (const m of held.splice(0)) s1.step(m);
    net.deliverAll(); // chunk 3 sent (and lost); round trip measured: 2 ticks → timeout 2 × 2 + 1
    expect(snaps.map((m) => m.offset)).toEqual([0, 3]);
    for (let i = 0; i < 4; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    expect(snaps.map((m) => m.offset)).toEqual([0, 3]); // not yet at the configured 3 ticks
    net.tick("s1");
    net.deliverAll();
    expect(snaps.map((m) => m.offset).slice(0, 3)).toEqual([0, 3, 3]);
  });

  it("chunks are resent only to a follower the leader still hears from", () => {
    const { net, snaps } = behind({ checkQuorum: true });
    let s3Gone = false;
    net.filter = (m) => {
      if (m.type === "snap") snaps.push(m);
      if (s3Gone && (m.to === "s3" || m.from === "s3")) return false;
      return m.type !== "snap";
    };
    net.tick("s1");
    net.deliverAll();
    expect(snaps.length).toBe(1);
    s3Gone = true;
    for (let i = 0; i < 60; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    // Within the first election timeout (10 ticks) it resends every 3 ticks; then s3 is no longer
    // recently active and nothing more goes out.
    expect(net.core("s1").currentRole).toBe("leader");
    expect(snaps.length).toBeLessThanOrEqual(1 + 4);
  });
});
