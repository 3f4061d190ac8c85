// Owns the core simulator's network: every message a replica sends goes through send(), which
// applies the network faults in force (a partition, loss, delay and reordering, duplication, the
// reader bounce) and schedules its delivery; delivery steps the receiving core, or holds the message
// while its replica is paused. Loss, delay and duplication draw from their own stream ("net"), so
// the order of network draws does not depend on the driver's. It also counts what snapshot
// transfers cost (chunks sent against chunks needed).
import type { Message } from "../core/index.ts";
import { decodeMessage, encodeMessage } from "../transport/codec.ts";
import type { Cluster } from "./cluster.ts";
import { Violation } from "./invariants.ts";
import type { HeldAnswer, SimNode } from "./replica.ts";

export class SimNetwork {
  /** Snapshot transfer → furthest chunk sent (countChunk). */
  private readonly transfers = new Map<string, number>();

  constructor(private readonly c: Cluster) {}

  send(ms: Message[]): void {
    for (const m of ms) this.sendMessage(m);
  }

  private sendMessage(sent: Message): void {
    const c = this.c;
    const f = c.faults;
    const r = c.netRng;
    if (sent.type === "snap") this.countChunk(sent);
    let m = sent;
    if (c.o.wireCodec) {
      const decoded = decodeMessage<Message>(encodeMessage(sent));
      if (!decoded) throw new Violation(`message ${sent.type} does not survive the wire codec`);
      m = decoded;
    }
    if (f.blocked?.(m.from, m.to)) return;
    if (f.dropRate > 0 && r.chance(f.dropRate)) return;
    if (m.type === "readIndexResp" && f.readerBounceRate > 0 && r.chance(f.readerBounceRate)) {
      this.bounceReader(m);
      return;
    }
    const delay = () => {
      let d = r.int(c.p.delayMinMs, c.p.delayMaxMs);
      if (f.reorderRate > 0 && r.chance(f.reorderRate)) d += r.int(1, 10 * c.p.delayMaxMs);
      return d;
    };
    c.heap.push(c.now + delay(), () => this.deliver(m));
    if (f.duplicateRate > 0 && r.chance(f.duplicateRate)) {
      c.heap.push(c.now + delay(), () => this.deliver(m));
    }
  }

  /**
   * Snapshot transfer cost: every chunk message a leader sends (`snapChunksSent`) against the
   * chunks each transfer got through, up to the furthest one sent (`snapChunksNeeded`; a transfer
   * cut short by a crash or a new leader needed only those). A transfer is one leader term, one
   * snapshot and one incarnation of the receiver (a restarted receiver lost what it had received).
   */
  private countChunk(m: Message): void {
    const c = this.c;
    c.count("snapChunksSent");
    const to = c.nodes.get(m.to);
    const key = `${m.from}>${m.to}#${to?.incarnation ?? 0}@${m.term}/${m.snapshot?.index ?? 0}`;
    const chunk = Math.floor((m.offset ?? 0) / c.p.snapshotChunkBytesMax) + 1;
    const before = this.transfers.get(key) ?? 0;
    if (chunk <= before) return;
    this.transfers.set(key, chunk);
    c.stats.snapChunksNeeded = (c.stats.snapChunksNeeded ?? 0) + chunk - before;
  }

  /**
   * Targeted fault: the reader crashes as its answer leaves the leader and restarts 1–3 ms later.
   * The network holds the answer until the new incarnation has started as many reads as the old
   * one had (the worst moment for a context reused across restarts), or 40 delays at most.
   */
  private bounceReader(m: Message): void {
    const c = this.c;
    const n = c.nodes.get(m.to);
    if (!n?.core || n.removed || n.paused) return;
    const held = { m, afterReads: n.readSeq, done: false };
    c.count("readerBounce");
    n.answersHeld.push(held);
    c.crash(n, "reader bounce");
    const inc = n.incarnation;
    c.heap.push(c.now + c.rng.int(1, 3), () => {
      if (!n.core && !n.removed && n.incarnation === inc) c.startNode(n);
    });
    c.heap.push(c.now + 40 * c.p.delayMaxMs, () => this.releaseHeld(n, held));
  }

  /** Delivers an answer held for a bounced reader (once: whichever release comes first). */
  releaseHeld(n: SimNode, h: HeldAnswer): void {
    if (h.done) return;
    h.done = true;
    n.answersHeld.splice(n.answersHeld.indexOf(h), 1);
    this.deliver(h.m);
  }

  private deliver(m: Message): void {
    const c = this.c;
    const n = c.nodes.get(m.to);
    if (!n?.core || n.removed) return;
    if (n.paused) {
      n.held.push(m);
      return;
    }
    c.count(`msg.${m.type}`);
    n.core.step(m);
    c.drive(n);
  }
}
