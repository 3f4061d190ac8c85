// Owns who this replica is to its peers, and whether it may vote: the cluster id, its incarnation
// (a random id made when its log is first created, so a wiped disk comes back as someone new), and
// the incarnation it first saw of each peer. Every batch between replicas carries
// (clusterId, fromIncarnation, toIncarnation); this module decides which batches are admitted.
//
// Why: a replica whose disk was wiped comes back with the same id, term 0 and no vote. It may have
// voted, or acknowledged entries that counted toward a commit, in its previous life; voting again
// can elect two leaders in one term or a leader without committed entries. It must not vote. The
// peers remember its old incarnation and tell it (toIncarnation); a brand-new replica (all disks
// empty at a cluster's first start) is told by every other voter that they never heard of it.
import type { LogStore } from "../storage/log-store.ts";
import type { Envelope } from "../transport/codec.ts";

export type { Envelope };

/** member: may vote. joining: a new log, not yet vouched for by every other voter. lost: must not vote. */
export type IdentityState = "member" | "joining" | "lost";

interface StoredIdentity {
  clusterId: string;
  incarnation: string;
  state: IdentityState;
  /** Lost: the incarnation a peer knew us by was taken back (once: peers may disagree on it). */
  adopted?: boolean;
}

export type Refusal = "cluster" | "incarnation" | "unknownPeer" | "pending";

/** LevelLog records (see LevelLog.putMeta). */
const IDENTITY = "identity";
const PEERS = "peerIncarnations";

export interface IdentityEvents {
  /** The replica learned it lost its durable state (once per incarnation). */
  onLost(reason: string, formerIncarnation: string): void;
  /** Every other voter vouched for a joining replica, durably: it may vote now. */
  onMember(): void;
  /** A persisting write failed: the caller stops the replica (the log is not trustworthy). */
  onError(err: unknown): void;
}

export class ReplicaIdentity {
  private stored: StoredIdentity;
  private readonly peers: Map<string, string>;
  /** Peers whose first incarnation is being persisted: their batches wait (are refused) until then. */
  private readonly persisting = new Set<string>();
  /** Joining: peers that vouched (they never knew another incarnation of us). */
  private readonly vouched = new Set<string>();
  private becomingMember = false;

  private constructor(
    private readonly log: LogStore,
    stored: StoredIdentity,
    private readonly events: IdentityEvents,
  ) {
    this.stored = stored;
    const p = log.meta(PEERS) as Record<string, string> | undefined;
    this.peers = new Map(Object.entries(p ?? {}));
  }

  /**
   * Loads the identity, or makes one for a log without it: a log with history (written before
   * identities existed) is a member; an empty log is lost when the snapshot store says it was one
   * (`hadSnapshot`), else joining. Persisted before anything is sent.
   */
  static async load(
    log: LogStore,
    o: { clusterId: string; hadSnapshot: boolean; newIncarnation: () => string; events: IdentityEvents },
  ): Promise<ReplicaIdentity> {
    const found = log.meta(IDENTITY) as StoredIdentity | undefined;
    if (found) {
      if (found.clusterId !== o.clusterId) {
        throw new Error(
          `this replica's log belongs to cluster ${JSON.stringify(found.clusterId)}, not ${JSON.stringify(o.clusterId)}: check the cluster id and the data directory`,
        );
      }
      return new ReplicaIdentity(log, found, o.events);
    }
    const state: IdentityState = !log.pristine ? "member" : o.hadSnapshot ? "lost" : "joining";
    const stored = { clusterId: o.clusterId, incarnation: o.newIncarnation(), state };
    await log.putMeta(IDENTITY, stored);
    return new ReplicaIdentity(log, stored, o.events);
  }

  get state(): IdentityState {
    return this.stored.state;
  }

  get incarnation(): string {
    return this.stored.incarnation;
  }

  get clusterId(): string {
    return this.stored.clusterId;
  }

  envelope(to: string, hello = false): Envelope {
    return {
      clusterId: this.stored.clusterId,
      fromIncarnation: this.stored.incarnation,
      toIncarnation: this.peers.get(to) ?? "",
      hello,
    };
  }

  /**
   * A joining replica that is the only voter has nobody to vouch for it: nobody can have known an
   * earlier incarnation of it either, so it is a member (a single-voter cluster must elect itself).
   */
  async settleAlone(voters: string[], selfId: string): Promise<void> {
    if (this.stored.state !== "joining" || this.unvouched(voters, selfId).length > 0) return;
    const next: StoredIdentity = { ...this.stored, state: "member" };
    await this.log.putMeta(IDENTITY, next);
    this.stored = next;
  }

  /** Voters (other than us) that have not vouched for a joining replica yet. */
  unvouched(voters: string[], selfId: string): string[] {
    if (this.stored.state !== "joining") return [];
    return voters.filter((v) => v !== selfId && !this.vouched.has(v));
  }

  /**
   * Decides whether a batch from `from` may be stepped. Undefined: admitted. A refusal says why;
   * refused batches are dropped (Raft tolerates loss).
   */
  admit(
    from: string,
    env: Envelope,
    conf: () => { voters: string[]; learners: string[] },
    selfId: string,
  ): Refusal | undefined {
    if (env.clusterId !== this.stored.clusterId) return "cluster";
    const mine = this.stored.incarnation;
    if (env.toIncarnation !== "" && env.toIncarnation !== mine) {
      // The sender knew another incarnation of us: our disk was replaced.
      const s = this.stored;
      if (s.state === "member") return "incarnation"; // two processes with one id?
      if (s.state === "joining" || !s.adopted) {
        // Take the old incarnation back (peers know us by it), once, and never vote again.
        this.update({ ...s, incarnation: env.toIncarnation, state: "lost", adopted: true });
        if (s.state === "joining") {
          this.events.onLost(
            `${from} knew this replica as incarnation ${env.toIncarnation}`,
            env.toIncarnation,
          );
        }
      }
    }
    if (this.persisting.has(from)) return "pending";
    const known = this.peers.get(from);
    if (known === undefined) {
      const c = conf();
      if (!c.voters.includes(from) && !c.learners.includes(from)) return "unknownPeer";
      // Remember the first incarnation we hear of, durably, before stepping anything from it: if
      // its disk is ever wiped, this is how it will learn so.
      this.peers.set(from, env.fromIncarnation);
      this.persisting.add(from);
      this.log.putMeta(PEERS, Object.fromEntries(this.peers)).then(
        () => this.persisting.delete(from),
        (err: unknown) => this.events.onError(err),
      );
      return "pending";
    }
    if (known !== env.fromIncarnation) return "unknownPeer";
    if (this.stored.state === "joining") {
      // It knows no other incarnation of us (it sends the one it first recorded).
      this.vouched.add(from);
      const rest = this.unvouched(conf().voters, selfId);
      if (rest.length === 0 && !this.becomingMember) {
        this.becomingMember = true;
        const next: StoredIdentity = { ...this.stored, state: "member" };
        this.log.putMeta(IDENTITY, next).then(
          () => {
            // A lost verdict that arrived meanwhile wins.
            if (this.stored.state !== "joining") return;
            this.stored = next;
            this.events.onMember();
          },
          (err: unknown) => this.events.onError(err),
        );
      }
    }
    return undefined;
  }

  /** Forgets the incarnations of peers that are no longer members (a committed removal). */
  forgetAllBut(members: string[]): void {
    let changed = false;
    for (const id of [...this.peers.keys()]) {
      if (!members.includes(id)) {
        this.peers.delete(id);
        changed = true;
      }
    }
    if (changed) {
      this.log
        .putMeta(PEERS, Object.fromEntries(this.peers))
        .catch((err: unknown) => this.events.onError(err));
    }
  }

  private update(next: StoredIdentity): void {
    this.stored = next;
    this.log.putMeta(IDENTITY, next).catch((err: unknown) => this.events.onError(err));
  }
}
