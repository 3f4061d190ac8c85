// Owns the core simulator's workload: closed-loop clients that each keep one request outstanding —
// a put (retried with the same sequence number after a timeout: the model state machine dedupes)
// or a ReadIndex read (abandoned after a timeout) — what each client remembers (the node that last
// served it, the highest write acknowledged before a read started), when a request counts as
// acknowledged or served, and the liveness probe proposed after healing.
import { type Entry, RaftError, type ReadState } from "../core/index.ts";
import type { Cluster } from "./cluster.ts";
import type { Command } from "./kv-model.ts";
import type { SimNode } from "./replica.ts";

interface ClientOp {
  kind: "put" | "read";
  seq: number;
  key: string;
  value: number;
  /** Node the request is outstanding at ("" = not yet accepted anywhere). */
  target: string;
  started: number;
  context: string;
  /** Highest log index of a write acknowledged before this read started. */
  ackedAtStart: number;
}

interface Client {
  id: string;
  seq: number;
  hint: string;
  op: ClientOp | undefined;
}

export class Clients {
  private readonly clients: Client[] = [];
  /** Highest log index of an acknowledged write: a read that starts now must read at least this. */
  private maxAckedIndex = 0;
  /** Reads served (and checked). */
  reads = 0;
  private probeSeq = 0;
  /** When the first probe after healing was applied (undefined: not yet). */
  probeDoneAt: number | undefined;
  private readonly opTimeoutMs: number;

  constructor(private readonly c: Cluster) {
    this.opTimeoutMs = 2 * c.electionMs;
  }

  /** Creates the clients; each starts its first request at a random time. */
  start(count: number): void {
    const c = this.c;
    for (let k = 0; k < count; k++) {
      const cl: Client = { id: `c${k + 1}`, seq: 0, hint: "", op: undefined };
      this.clients.push(cl);
      c.heap.push(c.rng.int(0, c.p.clientOpEveryMs), () => this.clientEvent(cl));
    }
  }

  /** Replica n applied command `cmd` at `e`: the put it answers (if n accepted it) is acknowledged. */
  applied(n: SimNode, e: Entry, cmd: Command): void {
    if (cmd.c === "probe") {
      if (this.probeDoneAt === undefined && !this.c.faults.faulting) this.probeDoneAt = this.c.now;
      return;
    }
    const cl = this.clients.find((x) => x.id === cmd.c);
    const op = cl?.op;
    if (cl && op && op.kind === "put" && op.seq === cmd.s && op.target === n.id) {
      // Acknowledged: any read that starts from now on must see index ≥ e.index.
      if (e.index > this.maxAckedIndex) this.maxAckedIndex = e.index;
      cl.op = undefined;
      cl.hint = n.id; // clients stick to the node that last served them
    }
  }

  /** Replica n has applied up to read state `rs`: the read waiting for it is served (and checked). */
  served(n: SimNode, rs: ReadState): void {
    for (const cl of this.clients) {
      const op = cl.op;
      if (op?.kind !== "read" || op.context !== rs.context) continue;
      this.c.checker.checkRead(n, rs, op.ackedAtStart);
      this.reads++;
      if (n.core?.currentRole !== "leader") this.c.count("followerRead");
      cl.op = undefined;
      cl.hint = n.id;
    }
  }

  private clientEvent(cl: Client): void {
    const c = this.c;
    c.heap.push(c.now + c.rng.int(1, 2 * c.p.clientOpEveryMs), () => this.clientEvent(cl));
    const op = cl.op;
    if (op) {
      if (op.target !== "" && c.now - op.started < this.opTimeoutMs) return;
      // Timed out (or never accepted): the node we tried may be partitioned or deposed without
      // knowing it — forget it and try elsewhere, as a real client library would.
      if (op.target !== "") cl.hint = "";
      if (op.kind === "read") {
        cl.op = undefined; // abandoned; a new read starts fresh
        return;
      }
      this.proposePut(cl, op); // retry with the same sequence number: the state machine dedupes
      return;
    }
    cl.seq++;
    const kind = c.rng.chance(c.p.readRate) ? "read" : "put";
    const newOp: ClientOp = {
      kind,
      seq: cl.seq,
      key: c.rng.pick(["a", "b", "c", "d"]),
      value: c.rng.int(0, 1_000_000),
      target: "",
      started: c.now,
      context: "",
      ackedAtStart: this.maxAckedIndex,
    };
    cl.op = newOp;
    if (kind === "put") this.proposePut(cl, newOp);
    else this.startRead(cl, newOp);
  }

  private pickTarget(cl: Client): SimNode | undefined {
    const c = this.c;
    const hinted = c.nodes.get(cl.hint);
    if (hinted?.core && !hinted.removed && c.rng.chance(0.9)) return hinted;
    const live = c.liveNodes();
    return live.length > 0 ? c.rng.pick(live) : undefined;
  }

  private proposePut(cl: Client, op: ClientOp): void {
    const c = this.c;
    op.target = "";
    const n = this.pickTarget(cl);
    if (!n?.core || n.paused) return;
    try {
      n.core.propose(c.codec.encode({ c: cl.id, s: op.seq, k: op.key, v: op.value }));
      op.target = n.id;
      op.started = c.now;
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
      cl.hint = err.leaderId;
    }
    c.drive(n);
  }

  private startRead(cl: Client, op: ClientOp): void {
    const c = this.c;
    // With reader bounces, reads spread over all replicas (follower reads), as a read-heavy
    // deployment spreads them; otherwise clients stick to the node that served them last.
    const live = c.liveNodes();
    const n = c.p.readerBounceRate > 0 && live.length > 0 ? c.rng.pick(live) : this.pickTarget(cl);
    if (!n?.core || n.paused) {
      cl.op = undefined;
      return;
    }
    // The node names the read, as raft/node does: `id/incarnation/seq`, the incarnation standing in
    // for the node's random part (unique across restarts either way).
    const seq = ++n.readSeq;
    op.context = c.driverBugs.reuseReadContextsAfterRestart
      ? `${n.id}/${seq}`
      : `${n.id}/${n.incarnation}/${seq}`;
    try {
      n.core.readIndex(op.context);
      op.target = n.id;
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
      cl.op = undefined;
    }
    c.drive(n);
    for (const h of n.answersHeld) {
      if (h.afterReads <= n.readSeq) {
        c.heap.push(c.now + c.netRng.int(1, c.p.delayMaxMs), () => c.net.releaseHeld(n, h));
      }
    }
  }

  /** After healing, every tick: the leader proposes a probe until one is applied (liveness). */
  probeEvent(): void {
    const c = this.c;
    if (this.probeDoneAt !== undefined) return;
    c.heap.push(c.now + c.p.tickMs, () => this.probeEvent());
    const l = c.leaderNode();
    if (!l?.core) return;
    try {
      l.core.propose(c.codec.encode({ c: "probe", s: ++this.probeSeq, k: "probe", v: 0 }));
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
    }
    c.drive(l);
  }
}
