// Owns the simulated network between real RaftNodes: per sender, messages queued in one turn leave
// as one batch with the sender's envelope (as GrpcTransport does), every message through the wire
// codec; each batch is delayed, dropped, duplicated or cut by a partition, on directed links. A
// batch to a process that is down makes the sender's transport report the peer unreachable
// (connection refused), which is what starts the node's early pre-vote. With a bandwidth (a profile
// of its own), each directed link sends one batch at a time and a batch takes its bytes' time on
// the wire, so a snapshot costs what its size costs; the network counts the chunk messages leaders
// send against the chunks each transfer needed.
import { snapshotChunkBytesMaxDefault } from "../../core/index.ts";
import type { RaftNode, Transport } from "../../node/node.ts";
import { decodeMessage, encodeMessage } from "../../transport/codec.ts";
import type { Rng } from "../prng.ts";
import type { Life, VirtualTime } from "./virtual-time.ts";

export interface NetworkParams {
  delayMsMin: number;
  delayMsMax: number;
  dropRate: number;
  duplicateRate: number;
  /** Bytes a link carries per virtual ms; 0: unlimited (every batch costs only its delay). */
  bandwidthBytesPerMs: number;
  /** The nodes' snapshotChunkBytesMax, to number the chunks (undefined: the core's default). */
  snapshotChunkBytesMax: number | undefined;
}

/** What a batch's envelope adds to its messages on the wire (ids, incarnations, framing). */
const envelopeBytes = 64;

interface Endpoint {
  life: Life;
  node: RaftNode;
}

export class SimNodeNetwork {
  private readonly endpoints = new Map<string, Endpoint>();
  /** Directed links that carry nothing: "from>to". */
  private readonly cut = new Set<string>();
  private readonly refusedAt = new Map<string, number>();
  params: NetworkParams;
  batches = 0;
  /** Snapshot chunk messages sent by leaders, and the chunks their transfers needed. */
  snapChunksSent = 0;
  snapChunksNeeded = 0;
  /** Transfer (leader, receiver's life, term, snapshot) → furthest chunk sent. */
  private readonly transfers = new Map<string, number>();
  /** Directed link → when its wire is free again (bandwidth profile). */
  private readonly busyUntil = new Map<string, number>();
  /** Batches on the wire, by sender (a crash loses those still in its own buffers). */
  private readonly inFlight = new Set<{ from: string; to: string; lost: boolean }>();

  constructor(
    private readonly time: VirtualTime,
    private readonly rng: Rng,
    params: NetworkParams,
  ) {
    this.params = { ...params };
  }

  attach(id: string, life: Life, node: RaftNode): void {
    this.endpoints.set(id, { life, node });
  }

  detach(id: string): void {
    this.endpoints.delete(id);
    // Their delivery events belong to the dead life and never run: forget them here.
    for (const b of this.inFlight) if (b.to === id) this.inFlight.delete(b);
  }

  /** `id` crashed: each batch it sent that is still on the wire was in its buffers or not, at random. */
  senderCrashed(id: string): void {
    for (const b of this.inFlight) if (b.from === id && this.rng.chance(0.5)) b.lost = true;
    // Its send queues die with it: a new life does not wait behind them (no rng drawn).
    for (const link of this.busyUntil.keys()) if (link.startsWith(`${id}>`)) this.busyUntil.delete(link);
  }

  /** Cuts every link between the two groups, both ways. */
  partition(a: string[], b: string[]): void {
    for (const x of a) for (const y of b) this.cut.add(`${x}>${y}`).add(`${y}>${x}`);
  }

  /** Cuts one direction only. */
  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  isCut(from: string, to: string): boolean {
    return this.cut.has(`${from}>${to}`);
  }

  /** The transport of `id`'s life `life`. */
  transportFor(id: string, life: Life, node: () => RaftNode | undefined): Transport {
    const queues = new Map<string, { messages: Uint8Array[]; ask: boolean | undefined }>();
    let scheduled = false;
    const flush = () => {
      scheduled = false;
      const self = node();
      if (!self) return;
      for (const [to, q] of queues) {
        const env = { ...self.envelope(to), hello: q.ask === true };
        this.carry(id, to, env, q.messages);
      }
      queues.clear();
    };
    const queue = (to: string) => {
      let q = queues.get(to);
      if (!q) {
        q = { messages: [], ask: undefined };
        queues.set(to, q);
      }
      if (!scheduled) {
        scheduled = true;
        this.time.at(0, life, flush);
      }
      return q;
    };
    return {
      send: (to, message) => {
        if (message.type === "snap") this.countChunk(id, to, message);
        queue(to).messages.push(encodeMessage(message));
      },
      hello: (to, ask) => {
        const q = queue(to);
        q.ask = q.ask === true || ask;
      },
    };
  }

  private carry(
    from: string,
    to: string,
    env: { clusterId: string; fromIncarnation: string; toIncarnation: string; hello: boolean },
    messages: Uint8Array[],
  ): void {
    this.batches++;
    const p = this.params;
    const sender = this.endpoints.get(from);
    if (!sender) return;
    if (!this.endpoints.has(to) && !this.isCut(from, to)) {
      // Connection refused: the sender learns at once (once per 100 ms per link, as backoff does).
      const key = `${from}>${to}`;
      const last = this.refusedAt.get(key) ?? -1e9;
      if (this.time.now - last >= 100) {
        this.refusedAt.set(key, this.time.now);
        this.time.at(this.rng.int(1, 5), sender.life, () => sender.node.peerUnreachable(to));
      }
      return;
    }
    if (this.isCut(from, to) || this.rng.chance(p.dropRate)) return;
    const copies = this.rng.chance(p.duplicateRate) ? 2 : 1;
    // The batch's time on the wire, behind what the link is still sending (no rng: a seed without
    // a bandwidth draws exactly what it drew before).
    let wireMs = 0;
    if (p.bandwidthBytesPerMs > 0) {
      const link = `${from}>${to}`;
      const bytes = messages.reduce((n, m) => n + m.byteLength, envelopeBytes);
      const start = Math.max(this.time.now, this.busyUntil.get(link) ?? 0);
      const done = start + bytes / p.bandwidthBytesPerMs;
      this.busyUntil.set(link, done);
      wireMs = done - this.time.now;
    }
    for (let c = 0; c < copies; c++) {
      const delay = wireMs + p.delayMsMin + this.rng.next() * (p.delayMsMax - p.delayMsMin);
      const target = this.endpoints.get(to)!;
      const wire = { from, to, lost: false };
      this.inFlight.add(wire);
      this.time.at(delay, target.life, () => {
        this.inFlight.delete(wire);
        // Cut while in flight, or the receiver died and came back as another life: lost.
        const now = this.endpoints.get(to);
        if (wire.lost || !now || now.life !== target.life || this.isCut(from, to)) return;
        now.node.receive(
          from,
          env,
          messages.map((b) => decodeMessage(b)),
        );
      });
    }
  }

  /**
   * A transfer is one leader's term, one snapshot and one life of the receiver (a restarted
   * receiver lost what it had received); it needed the chunks up to the furthest one sent to a
   * receiver that was up. A chunk sent to a receiver that is down counts as sent and needed by
   * nobody: resending into a dead peer is the cost the bound is there to show.
   */
  private countChunk(
    from: string,
    to: string,
    m: { term: number; offset?: number; snapshot?: { index: number } },
  ): void {
    this.snapChunksSent++;
    const life = this.endpoints.get(to)?.life.name;
    if (life === undefined) return;
    const key = `${from}>${to}#${life}@${m.term}/${m.snapshot?.index ?? 0}`;
    const chunkBytes = this.params.snapshotChunkBytesMax ?? snapshotChunkBytesMaxDefault;
    const chunk = Math.floor((m.offset ?? 0) / chunkBytes) + 1;
    const before = this.transfers.get(key) ?? 0;
    if (chunk <= before) return;
    this.transfers.set(key, chunk);
    this.snapChunksNeeded += chunk - before;
  }
}
