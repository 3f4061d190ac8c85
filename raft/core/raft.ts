// Owns the Raft protocol state machine for one replica (etcd raft.go style): elections with PreVote
// and CheckQuorum, replication with batching and pipelining, the commit rule, ReadIndex, leadership
// transfer, chunked snapshots and single-server membership changes. Pure: no clock, no I/O, no
// randomness of its own — time is tick(), input is step(), output is ready(), randomness is injected.
// Two parts live in files of their own, as in etcd: the pending ReadIndex requests and their
// heartbeat rounds (read-only.ts, etcd's read_only.go) and what a membership change makes of the
// configuration (conf-change.ts, etcd's confchange/); this file decides when each applies.
// The driver contract: send rd.messages (they may leave before the write) → persist rd.hardState +
// rd.entries + rd.snapshot → send rd.messagesAfterPersist → apply rd.committedEntries → advance(rd).
// The core decides which list a message goes in, and counts the leader's own entries toward a
// commit only at advance(). See docs/raft.md.
import { assert } from "./assert.ts";
import { ConfLog, changeConf, syncProgress } from "./conf-change.ts";
import { RaftLog } from "./log.ts";
import { Progress } from "./progress.ts";
import { ReadOnly } from "./read-only.ts";
import type { RaftStorage } from "./storage.ts";
import {
  type ConfChange,
  type ConfState,
  copyConf,
  type Entry,
  EntryType,
  emptyMessage,
  encodeConfState,
  type HardState,
  type Message,
  type MessageType,
  type PeerStatus,
  RaftError,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SnapshotMeta,
  type SoftState,
  type Status,
} from "./types.ts";

/** Switches that break the protocol on purpose, so tests can prove they catch each bug. Never in production. */
export interface TestOnlyBugs {
  /** Commit an old-term entry by counting replicas (violates §5.4.2, Figure 8). */
  countOldTermEntries?: boolean;
  /** Grant votes without the §5.4.1 up-to-date check. */
  voteWithoutUpToDateCheck?: boolean;
  /** Answer ReadIndex at once, without confirming leadership with a heartbeat quorum (§6.4). */
  readIndexWithoutQuorum?: boolean;
  /** Serve ReadIndex at the commit index before an entry of the leader's own term committed (§6.4). */
  readBeforeTermCommit?: boolean;
  /** Failpoint commit-without-quorum: the leader's own log alone advances the commit index. */
  commitWithoutQuorum?: boolean;
  /** Failpoint ack-before-commit (its Raft half): entries leave only every few heartbeat ticks. */
  replicateOnTickOnly?: boolean;
}

export interface RaftConfig {
  id: string;
  storage: RaftStorage;
  /** Ticks without hearing from a leader before campaigning (randomized in [n, 2n)). */
  electionTicks: number;
  /** Ticks between leader heartbeats; must be < electionTicks. */
  heartbeatTicks: number;
  /** Seeded source in [0, 1): the only randomness (election jitter). */
  random: () => number;
  preVote?: boolean;
  checkQuorum?: boolean;
  entriesPerMessageMax?: number;
  bytesPerMessageMax?: number;
  /** Unacknowledged appends per follower in replicate state (pipelining window). */
  inflightMessagesMax?: number;
  snapshotChunkBytesMax?: number;
  /**
   * A snapshot chunk not answered within this many ticks is sent again (default 2 ×
   * heartbeatTicks; longer when chunks take longer to be answered — twice the last round trip —
   * and never longer than electionTicks). Nothing else resends one: a follower in snapshot state
   * has exactly one chunk in flight.
   */
  snapshotRetransmitTicks?: number;
  /** Committed entries handed out by one ready(). */
  committedEntriesPerReadyMax?: number;
  /** Restart: the index the application's state already reflects (default: the storage snapshot's). */
  applied?: number;
  /**
   * Leader: a ReadIndex request not confirmed within this many ticks is dropped (default 2 ×
   * electionTicks); its requester times out and retries. Bounds how long a read can wait here.
   */
  readTimeoutTicks?: number;
  /** Leader: ReadIndex requests waiting at once (default 10,000); beyond it local reads fail fast. */
  readsPendingMax?: number;
  testOnlyBugs?: TestOnlyBugs;
  /**
   * false: this replica must not vote or campaign (default true). The driver sets it when the
   * replica cannot vouch for its own past promises, e.g. a wiped disk (docs/raft.md); it may
   * still replicate, and setMayVote(true) restores it once that is settled.
   */
  mayVote?: boolean;
}

const NONE = "";
/** Failpoint ack-before-commit replicates every this many heartbeat ticks (200 ms at 50 ms ticks). */
const lazyReplicationEveryTicks = 4;
const TRANSFER_CONTEXT = "transfer";

interface SnapshotReceive {
  /** Chunks are joined only within one transfer: one leader, one term, one snapshot. */
  from: string;
  term: number;
  meta: SnapshotMeta;
  chunks: Uint8Array[];
  received: number;
  total: number;
}

/** A snapshot chunk's size when the config names none. */
export const snapshotChunkBytesMaxDefault = 1024 * 1024;

export class RaftCore {
  readonly id: string;
  private term = 0;
  private vote = NONE;
  private lead = NONE;
  private role: Role = "follower";
  private readonly log: RaftLog;
  private readonly prs = new Map<string, Progress>();
  private voters: string[] = [];
  private learners: string[] = [];
  /** Configuration at the storage snapshot, and every conf entry in the log since (effective on append). */
  private readonly confs: ConfLog;
  private readonly votes = new Map<string, boolean>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private leadTransferee = NONE;
  /** Index of the newest conf entry this leader may not yet have committed. */
  private pendingConfIndex = 0;
  /** ReadIndex requests awaiting confirmation by a heartbeat round (read-only.ts). */
  private readonly readOnly: ReadOnly;
  /** Failpoint ack-before-commit: heartbeat ticks counted towards its next (late) append. */
  private lazyReplicationTicks = 0;
  private snapRecv: SnapshotReceive | undefined;
  private prevSoft: SoftState;
  private prevHard: HardState;
  private outstanding: Ready | undefined;

  private readonly electionTicks: number;
  private readonly heartbeatTicks: number;
  private readonly random: () => number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly entriesPerMessageMax: number;
  private readonly bytesPerMessageMax: number;
  private readonly inflightMessagesMax: number;
  private readonly snapshotChunkBytesMax: number;
  private readonly snapshotRetransmitTicks: number;
  private readonly committedEntriesPerReadyMax: number;
  private readonly readsPendingMax: number;
  private readonly bugs: TestOnlyBugs;
  private mayVote: boolean;

  constructor(c: RaftConfig) {
    assert(c.id !== NONE, "node id must not be empty");
    assert(
      c.heartbeatTicks > 0 && c.electionTicks > c.heartbeatTicks,
      "need 0 < heartbeatTicks < electionTicks",
    );
    this.id = c.id;
    this.electionTicks = c.electionTicks;
    this.heartbeatTicks = c.heartbeatTicks;
    this.random = c.random;
    this.preVote = c.preVote ?? true;
    this.checkQuorum = c.checkQuorum ?? true;
    this.entriesPerMessageMax = c.entriesPerMessageMax ?? 256;
    this.bytesPerMessageMax = c.bytesPerMessageMax ?? 1024 * 1024;
    this.inflightMessagesMax = c.inflightMessagesMax ?? 64;
    this.snapshotChunkBytesMax = c.snapshotChunkBytesMax ?? snapshotChunkBytesMaxDefault;
    this.snapshotRetransmitTicks = c.snapshotRetransmitTicks ?? 2 * c.heartbeatTicks;
    assert(this.snapshotRetransmitTicks >= 1, "snapshotRetransmitTicks must be ≥ 1");
    this.committedEntriesPerReadyMax = c.committedEntriesPerReadyMax ?? 4096;
    const readTimeoutTicks = c.readTimeoutTicks ?? 2 * c.electionTicks;
    this.readsPendingMax = c.readsPendingMax ?? 10_000;
    assert(readTimeoutTicks >= 1 && this.readsPendingMax >= 1, "read limits must be ≥ 1");
    this.readOnly = new ReadOnly(readTimeoutTicks, this.readsPendingMax);
    this.bugs = c.testOnlyBugs ?? {};
    this.mayVote = c.mayVote ?? true;
    assert(this.entriesPerMessageMax >= 1 && this.inflightMessagesMax >= 1, "limits must be ≥ 1");
    assert(this.snapshotChunkBytesMax >= 1, "snapshotChunkBytesMax must be ≥ 1");

    const { hardState, confState } = c.storage.initialState();
    this.log = new RaftLog(c.storage);
    this.confs = new ConfLog(confState);
    // Configuration is the newest conf entry in the log (effective when appended), else the snapshot's.
    const first = c.storage.firstIndex();
    const last = c.storage.lastIndex();
    for (let lo = first; lo <= last; ) {
      const es = c.storage.entries(lo, last + 1, Number.POSITIVE_INFINITY);
      this.confs.noteAppended(es);
      lo += es.length;
    }
    this.applyConf(this.confs.current());

    assert(hardState.commit <= this.log.lastIndex(), "persisted commit beyond the persisted log");
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.log.commitTo(hardState.commit);
    if (c.applied !== undefined) {
      assert(c.applied <= this.log.committed, "applied beyond commit");
      this.log.applied = Math.max(this.log.applied, c.applied);
    }
    this.prevHard = { ...hardState };
    this.becomeFollower(this.term, NONE);
    this.prevSoft = { leader: NONE, role: "follower" };
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  tick(): void {
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  /** See RaftConfig.mayVote. */
  setMayVote(allowed: boolean): void {
    this.mayVote = allowed;
  }

  /** Starts an election now (tests, or an operator forcing one); ignored when not promotable. */
  campaign(): void {
    this.hup(false);
  }

  /** Appends a normal entry; only the leader accepts (fail fast, the client retries elsewhere). */
  propose(data: Uint8Array): { index: number; term: number } {
    this.checkCanPropose();
    const r = this.appendEntry(EntryType.Normal, data);
    if (!this.bugs.replicateOnTickOnly) this.bcastAppend();
    return r;
  }

  /**
   * Appends several normal entries and replicates them with one append per follower instead of
   * one per entry: what a driver collected in one round costs one message, one ack.
   */
  proposeBatch(datas: Uint8Array[]): { index: number; term: number }[] {
    this.checkCanPropose();
    const out = datas.map((d) => this.appendEntry(EntryType.Normal, d));
    if (out.length > 0 && !this.bugs.replicateOnTickOnly) this.bcastAppend();
    return out;
  }

  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    this.checkCanPropose();
    // One change at a time (§4.1): the previous one must be committed before the next is appended.
    if (this.pendingConfIndex > this.log.committed) {
      throw new RaftError("CONF_CHANGE_PENDING", `conf change at ${this.pendingConfIndex} not committed yet`);
    }
    // The single-server bug fix (§4.1, raft-dev 2015): a new leader must commit an entry of its own
    // term (its no-op) before changing the configuration.
    if (this.log.term(this.log.committed) !== this.term) {
      throw new RaftError("CONF_CHANGE_PENDING", "leader has not committed an entry of its term yet");
    }
    // What the change makes of the configuration in effect (conf-change.ts), or why it is refused.
    const next = changeConf(
      { voters: this.voters, learners: this.learners, addresses: this.confs.current().addresses },
      cc,
      this.id,
      this.log.committed,
      (id) => this.prs.get(id)!.match,
    );
    const r = this.appendEntry(EntryType.ConfChange, encodeConfState(next));
    this.pendingConfIndex = r.index;
    this.bcastAppend();
    return r;
  }

  /**
   * Linearizable read (§6.4): a ReadState {index, context} appears in a later Ready once leadership is
   * confirmed; serve the read when applied ≥ index. On a follower the request is forwarded.
   */
  readIndex(context: string): void {
    if (this.role !== "leader") {
      if (this.lead === NONE) throw new RaftError("PROPOSAL_DROPPED", "no leader to serve the read");
      this.send({ ...emptyMessage("readIndex", this.id, this.lead, this.term), context });
      return;
    }
    this.leaderRead(context, this.id);
  }

  /** Leadership transfer (§3.10): catch the target up, then TimeoutNow; proposals pause meanwhile. */
  transferLeadership(to: string): void {
    if (this.role !== "leader") throw new RaftError("NOT_LEADER", "only the leader transfers", this.lead);
    if (to === this.id) return;
    if (!this.voters.includes(to)) throw new RaftError("TRANSFER_INVALID", `${to} is not a voter`);
    if (this.leadTransferee === to) return;
    this.leadTransferee = to;
    // Must finish within one election timeout, else it is aborted (tickHeartbeat).
    this.electionElapsed = 0;
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to);
  }

  step(m: Message): void {
    if (m.to !== this.id) return;
    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "preVote") {
        // Leader lease (CheckQuorum, §6.2/§4.2.3): while we hear from a leader, ignore candidates —
        // a disruptive (removed or partitioned) server cannot depose it. Transfers force past it.
        const force = m.context === TRANSFER_CONTEXT;
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTicks;
        if (!force && inLease) return;
      }
      if (m.type === "preVote") {
        // A pre-vote never changes our term.
      } else if (m.type === "preVoteResp" && !m.reject) {
        // Granted pre-votes carry the future term; the term changes when the real election starts.
      } else if (m.type === "app" || m.type === "heartbeat" || m.type === "snap") {
        this.becomeFollower(m.term, m.from);
      } else if (m.type === "vote") {
        // Figure 2: only *granting* a vote resets the election timer (handleVote does that). A
        // candidate with a stale log that we will refuse must not hold back our own timeout, or
        // it could keep the up-to-date servers from ever campaigning first (no PreVote case).
        const elapsed = this.electionElapsed;
        this.becomeFollower(m.term, NONE);
        this.electionElapsed = elapsed;
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === "heartbeat" || m.type === "app")) {
        // A stale leader (e.g. one our lease made us ignore) learns our term and steps down;
        // without this a node with a higher term could be ignored forever.
        this.send(emptyMessage("appResp", this.id, m.from, this.term));
      } else if (m.type === "preVote") {
        this.send({ ...emptyMessage("preVoteResp", this.id, m.from, this.term), reject: true });
      }
      return;
    }

    if (m.type === "vote" || m.type === "preVote") {
      this.handleVote(m);
      return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        break;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(m);
        break;
      case "follower":
        this.stepFollower(m);
        break;
    }
  }

  hasReady(): boolean {
    if (this.outstanding) return false;
    if (this.msgs.length > 0 || this.readStates.length > 0 || this.readOnly.roundDue) return true;
    if (this.log.hasUnstable() || this.log.unstableSnapshot() || this.log.hasNextCommitted()) return true;
    if (this.prevSoft.leader !== this.lead || this.prevSoft.role !== this.role) return true;
    const h = this.prevHard;
    return h.term !== this.term || h.vote !== this.vote || h.commit !== this.log.committed;
  }

  ready(): Ready {
    assert(!this.outstanding, "ready() called again before advance()");
    // Every read that arrived since the last Ready is confirmed by this one heartbeat round.
    if (this.readOnly.roundDue) this.bcastHeartbeat(this.readOnly.nextRound());
    const rd: Ready = {
      entries: this.log.unstable().slice(),
      messages: [],
      messagesAfterPersist: [],
      committedEntries: this.log.nextCommitted(this.committedEntriesPerReadyMax, Number.POSITIVE_INFINITY),
      readStates: this.readStates,
    };
    if (this.prevSoft.leader !== this.lead || this.prevSoft.role !== this.role) {
      rd.softState = { leader: this.lead, role: this.role };
    }
    const h = this.prevHard;
    if (h.term !== this.term || h.vote !== this.vote || h.commit !== this.log.committed) {
      rd.hardState = { term: this.term, vote: this.vote, commit: this.log.committed };
    }
    const snap = this.log.unstableSnapshot();
    if (snap) rd.snapshot = snap;
    // What may leave before this Ready is durable: nothing when it changes the term or the vote or
    // installs a snapshot (every message then speaks for state a crash could take back); else
    // requests, never answers — an answer acknowledges what this Ready persists.
    const promises = snap !== undefined || h.term !== this.term || h.vote !== this.vote;
    for (const m of this.msgs) {
      if (!promises && sentBeforePersist.has(m.type)) rd.messages.push(m);
      else rd.messagesAfterPersist.push(m);
    }
    this.msgs = [];
    this.readStates = [];
    this.outstanding = rd;
    return rd;
  }

  /** The driver persisted, sent and applied `rd`. */
  advance(rd: Ready): void {
    assert(this.outstanding === rd, "advance() with a Ready that is not the outstanding one");
    this.outstanding = undefined;
    if (rd.softState) this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    const last = rd.entries[rd.entries.length - 1];
    if (last) {
      this.log.stableTo(last.index, last.term);
      this.selfAck();
    }
    if (rd.snapshot) {
      this.log.stableSnapTo(rd.snapshot.meta.index);
      this.log.applied = Math.max(this.log.applied, rd.snapshot.meta.index);
    }
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) this.log.appliedTo(lastApplied.index);
  }

  /** Meta for a snapshot the application takes at `index` (≤ applied): term and configuration there. */
  snapshotMeta(index: number): SnapshotMeta {
    assert(index <= this.log.applied, () => `snapshot at ${index} beyond applied ${this.log.applied}`);
    const term = this.log.term(index);
    assert(term !== undefined, () => `no term for snapshot index ${index}`);
    const conf = copyConf(this.confs.at(index));
    return { index, term, ...conf };
  }

  /** Term of entry `i` in this node's log (undefined when compacted or absent). */
  logTerm(i: number): number | undefined {
    return this.log.term(i);
  }

  status(): Status {
    const progress: Record<string, PeerStatus> = {};
    if (this.role === "leader") {
      for (const [id, pr] of this.prs) {
        progress[id] = {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          learner: pr.learner,
          recentActive: pr.recentActive,
        };
      }
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      conf: copyConf({ ...this.confs.current(), voters: this.voters, learners: this.learners }),
      progress,
      leadTransferee: this.leadTransferee,
      readsPending: this.readOnly.pending,
    };
  }

  /** Cheap accessors for hot paths (the simulator checks invariants after every step). */
  get currentTerm(): number {
    return this.term;
  }
  get currentRole(): Role {
    return this.role;
  }
  get leader(): string {
    return this.lead;
  }
  get committed(): number {
    return this.log.committed;
  }
  get applied(): number {
    return this.log.applied;
  }
  get lastIndex(): number {
    return this.log.lastIndex();
  }

  // ---------------------------------------------------------------------------------------------
  // Roles

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTicks + Math.floor(this.random() * this.electionTicks);
    this.leadTransferee = NONE;
    this.votes.clear();
    const next = this.log.lastIndex() + 1;
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(next, pr.learner, this.inflightMessagesMax);
      if (id === this.id) fresh.match = this.log.stableLastIndex();
      this.prs.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.readOnly.reset();
  }

  private becomeFollower(term: number, lead: string): void {
    this.reset(term);
    this.lead = lead;
    this.role = "follower";
  }

  private becomeCandidate(): void {
    assert(this.role !== "leader", "leader cannot become candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomePreCandidate(): void {
    assert(this.role !== "leader", "leader cannot become pre-candidate");
    // No term change, no vote: a pre-vote round must not disturb anyone (§9.6).
    this.votes.clear();
    this.lead = NONE;
    this.role = "preCandidate";
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", "only a candidate becomes leader");
    this.reset(this.term);
    this.lead = this.id;
    this.role = "leader";
    const self = this.prs.get(this.id);
    if (self) self.recentActive = true;
    // Any conf entry in the log may be uncommitted: no new change until everything up to here commits.
    this.pendingConfIndex = this.log.lastIndex();
    // The no-op lets this leader commit an entry of its own term, which commits everything before
    // it (§5.4.2) and is the precondition for ReadIndex and membership changes.
    this.appendEntry(EntryType.Noop, new Uint8Array(0));
  }

  private promotable(): boolean {
    return this.mayVote && this.voters.includes(this.id);
  }

  private hup(transfer: boolean): void {
    if (this.role === "leader" || !this.promotable()) return;
    if (this.preVote && !transfer) this.campaignRound("preElection", false);
    else this.campaignRound("election", transfer);
  }

  private campaignRound(kind: "preElection" | "election", transfer: boolean): void {
    let voteMsg: MessageType;
    let term: number;
    if (kind === "preElection") {
      this.becomePreCandidate();
      voteMsg = "preVote";
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = "vote";
      term = this.term;
    }
    const respType = kind === "preElection" ? "preVoteResp" : "voteResp";
    if (this.poll(this.id, respType, true) === "won") {
      if (kind === "preElection") this.campaignRound("election", false);
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const v of this.voters) {
      if (v === this.id) continue;
      this.send({
        ...emptyMessage(voteMsg, this.id, v, term),
        index: lastIndex,
        logTerm: lastTerm,
        context: transfer ? TRANSFER_CONTEXT : "",
      });
    }
  }

  private poll(id: string, _type: MessageType, granted: boolean): "won" | "lost" | "pending" {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    let yes = 0;
    let no = 0;
    for (const v of this.voters) {
      const g = this.votes.get(v);
      if (g === true) yes++;
      else if (g === false) no++;
    }
    const q = this.quorum();
    if (yes >= q) return "won";
    if (this.voters.length - no < q) return "lost";
    return "pending";
  }

  private quorum(): number {
    return Math.floor(this.voters.length / 2) + 1;
  }

  // ---------------------------------------------------------------------------------------------
  // Ticks

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    this.readOnly.tick(); // expires reads left unconfirmed too long
    this.retransmitSnapshotChunks();
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0;
      if (this.checkQuorum) {
        // CheckQuorum (§6.2): a leader that has not heard from a majority for an election timeout
        // steps down, so clients stop talking to a deposed leader and a lease is meaningful.
        if (!this.quorumActive()) {
          this.becomeFollower(this.term, NONE);
          return;
        }
        for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
      }
      if (this.leadTransferee !== NONE) this.leadTransferee = NONE; // transfer timed out
    }
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      // While reads wait, every heartbeat is a new round (etcd sends the last pending context):
      // a round whose messages or answers were lost is retried without the requester's help.
      this.bcastHeartbeat(this.readOnly.waiting ? this.readOnly.nextRound() : "");
      if (this.bugs.replicateOnTickOnly && ++this.lazyReplicationTicks % lazyReplicationEveryTicks === 0) {
        this.bcastAppend();
      }
    }
  }

  private quorumActive(): boolean {
    let active = 0;
    for (const v of this.voters) {
      if (v === this.id || this.prs.get(v)?.recentActive) active++;
    }
    return active >= this.quorum();
  }

  // ---------------------------------------------------------------------------------------------
  // Per-role message handling

  private handleVote(m: Message): void {
    const respType = m.type === "vote" ? "voteResp" : "preVoteResp";
    // Figure 2 RequestVote: grant if we have not voted for someone else this term (a pre-vote for a
    // future term may always be granted) and the candidate's log is at least as up-to-date as ours.
    const canVote =
      this.mayVote &&
      (this.vote === m.from ||
        (this.vote === NONE && this.lead === NONE) ||
        (m.type === "preVote" && m.term > this.term));
    const upToDate = this.bugs.voteWithoutUpToDateCheck || this.log.isUpToDate(m.index, m.logTerm);
    if (canVote && upToDate) {
      this.send(emptyMessage(respType, this.id, m.from, m.term));
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ ...emptyMessage(respType, this.id, m.from, this.term), reject: true });
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "app":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppend(m);
        break;
      case "heartbeat":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        break;
      case "snap":
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshotChunk(m);
        break;
      case "timeoutNow":
        // Leadership transfer: campaign at once, skipping pre-vote and forcing past leases.
        this.hup(true);
        break;
      case "readIndexResp":
        this.readStates.push({ index: m.index, context: m.context });
        break;
      default:
        break;
    }
  }

  private stepCandidate(m: Message): void {
    const myResp = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
    switch (m.type) {
      case "app":
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        break;
      case "heartbeat":
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case "snap":
        this.becomeFollower(m.term, m.from);
        this.handleSnapshotChunk(m);
        break;
      case "voteResp":
      case "preVoteResp": {
        if (m.type !== myResp) break;
        const r = this.poll(m.from, m.type, !m.reject);
        if (r === "won") {
          if (this.role === "preCandidate") {
            this.campaignRound("election", false);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (r === "lost") {
          this.becomeFollower(this.term, NONE);
        }
        break;
      }
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case "app":
      case "heartbeat":
      case "snap":
        assert(false, () => `leader ${this.id} got ${m.type} from ${m.from} in its own term ${this.term}`);
        break;
      case "appResp":
        this.handleAppendResponse(m);
        break;
      case "heartbeatResp":
        this.handleHeartbeatResponse(m);
        break;
      case "snapResp":
        this.handleSnapshotResponse(m);
        break;
      case "readIndex":
        this.leaderRead(m.context, m.from);
        break;
      default:
        break;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Replication: follower side

  private handleAppend(m: Message): void {
    if (m.index < this.log.committed) {
      // Already committed here; tell the leader how far we are.
      this.send({ ...emptyMessage("appResp", this.id, m.from, this.term), index: this.log.committed });
      return;
    }
    const r = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (r) {
      this.noteAppended(r.appended);
      this.send({ ...emptyMessage("appResp", this.id, m.from, this.term), index: r.lastNew });
      return;
    }
    // Consistency check failed. Hint the leader with the last index whose term ≤ the leader's term
    // at m.index: it can skip a whole conflicting term per round trip (§5.3 optimisation).
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.send({
      ...emptyMessage("appResp", this.id, m.from, this.term),
      index: m.index,
      reject: true,
      rejectHint: hint.index,
      logTerm: hint.term,
    });
  }

  private handleHeartbeat(m: Message): void {
    // The leader sends commit = min(match, commit), so we hold every entry up to it.
    this.log.commitTo(m.commit);
    this.send({ ...emptyMessage("heartbeatResp", this.id, m.from, this.term), context: m.context });
  }

  private handleSnapshotChunk(m: Message): void {
    const meta = m.snapshot;
    assert(meta && m.data && m.offset !== undefined && m.total !== undefined, "malformed snapshot chunk");
    if (meta.index <= this.log.committed) {
      this.snapRecv = undefined;
      this.send({ ...emptyMessage("appResp", this.id, m.from, this.term), index: this.log.committed });
      return;
    }
    let r = this.snapRecv;
    const same =
      r !== undefined &&
      r.from === m.from &&
      r.term === m.term &&
      r.meta.index === meta.index &&
      r.meta.term === meta.term;
    if (!r || !same) {
      if (m.offset !== 0) {
        // A chunk of a transfer we hold nothing of (we restarted, or it is a new one): from 0.
        this.send({
          ...emptyMessage("snapResp", this.id, m.from, this.term),
          index: meta.index,
          offset: 0,
          reject: true,
        });
        return;
      }
      r = { from: m.from, term: m.term, meta, chunks: [], received: 0, total: m.total };
      this.snapRecv = r;
    } else if (m.offset !== r.received) {
      // A duplicate (behind what we hold; a late copy of the first chunk must not start over) or a
      // gap (ahead of it): say what we hold; only a gap asks the leader to go back.
      this.send({
        ...emptyMessage("snapResp", this.id, m.from, this.term),
        index: meta.index,
        offset: r.received,
        reject: m.offset > r.received,
      });
      return;
    }
    r.chunks.push(m.data);
    r.received += m.data.byteLength;
    if (r.received < r.total) {
      this.send({
        ...emptyMessage("snapResp", this.id, m.from, this.term),
        index: meta.index,
        offset: r.received,
      });
      return;
    }
    this.snapRecv = undefined;
    const data = new Uint8Array(r.total);
    let off = 0;
    for (const c of r.chunks) {
      data.set(c, off);
      off += c.byteLength;
    }
    const installed = this.restore({ meta, data });
    const index = installed ? this.log.lastIndex() : this.log.committed;
    this.send({ ...emptyMessage("appResp", this.id, m.from, this.term), index });
  }

  private restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We already hold the snapshot's last entry: just fast-forward commit, keep the log.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.applyConf(this.confs.restore(s.meta));
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Replication: leader side

  private appendEntry(type: number, data: Uint8Array): { index: number; term: number } {
    const e: Entry = { index: this.log.lastIndex() + 1, term: this.term, type, data };
    this.log.append([e]);
    this.noteAppended([e]);
    // Not counted toward a commit yet: the leader acknowledges its own entry once it is durable
    // (selfAck, from advance()), so no commit ever rests on an entry a crash could take back.
    return { index: e.index, term: e.term };
  }

  /** The leader's own durable entries count toward a commit (etcd: the self-ack after the append). */
  private selfAck(): void {
    if (this.role !== "leader") return;
    const self = this.prs.get(this.id);
    if (self?.maybeUpdate(this.log.stableLastIndex())) this.maybeCommit();
  }

  private maybeCommit(): boolean {
    const matches: number[] = [];
    for (const v of this.voters) matches.push(this.prs.get(v)?.match ?? 0);
    matches.sort((a, b) => b - a);
    const quorumIndex = this.bugs.commitWithoutQuorum
      ? (this.prs.get(this.id)?.match ?? 0)
      : (matches[this.quorum() - 1] ?? 0);
    const committed = this.log.maybeCommit(quorumIndex, this.term, this.bugs.countOldTermEntries === true);
    if (committed) this.onLeaderCommit();
    return committed;
  }

  private onLeaderCommit(): void {
    if (!this.readOnly.awaitingCommitIndex || this.log.term(this.log.committed) !== this.term) return;
    // Now the commit index is known: every read that waited for it reads at it.
    const index = this.log.committed;
    if (this.voters.length === 1 || this.bugs.readIndexWithoutQuorum) {
      for (const r of this.readOnly.takeAll()) this.deliverRead(r.from, index, r.context);
      return;
    }
    this.readOnly.readAt(index);
  }

  private bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id);
  }

  /** Sends what `to` needs next (entries or the start of a snapshot); false when nothing was sent. */
  private sendAppend(to: string, sendIfEmpty = true): boolean {
    const pr = this.prs.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents =
      prevTerm === undefined
        ? undefined
        : this.log.slice(
            pr.next,
            this.log.lastIndex() + 1,
            this.entriesPerMessageMax,
            this.bytesPerMessageMax,
          );
    if (prevTerm === undefined || ents === undefined) {
      // What the follower needs is compacted away: stream a snapshot — only to a live follower.
      if (!pr.recentActive) return false;
      const snap = this.log.snapshot();
      assert(snap.meta.index > 0, "log compacted without a snapshot");
      pr.becomeSnapshot(snap);
      this.sendSnapshotChunk(to, pr);
      return true;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    const last = ents[ents.length - 1];
    if (last) {
      if (pr.state === "replicate") pr.optimisticUpdate(last.index);
      else if (pr.state === "probe") pr.probeSent = true;
    }
    this.send({
      ...emptyMessage("app", this.id, to, this.term),
      index: prevIndex,
      logTerm: prevTerm,
      entries: ents,
      commit: this.log.committed,
    });
    return true;
  }

  private sendSnapshotChunk(to: string, pr: Progress): void {
    const s = pr.pendingSnapshot!;
    const offset = Math.min(pr.snapshotOffset, s.data.byteLength);
    const data = s.data.slice(offset, offset + this.snapshotChunkBytesMax);
    pr.snapshotIdleTicks = 0;
    this.send({
      ...emptyMessage("snap", this.id, to, this.term),
      snapshot: s.meta,
      offset,
      total: s.data.byteLength,
      data,
    });
  }

  private handleAppendResponse(m: Message): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    if (m.reject) {
      let next = m.rejectHint;
      if (m.logTerm > 0) next = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot!.meta.index) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.freeInflightsTo(m.index);

    // A new commit index is not broadcast in appends of its own (etcd's raft does broadcast here):
    // followers learn it from the next append or heartbeat, both of which carry it. Under load the
    // next append leaves within milliseconds; the broadcast doubled the messages, disk rounds and
    // answers per entry. Followers' applied state lags by up to one heartbeat when idle.
    this.maybeCommit();
    if (wasPaused) this.sendAppend(m.from);
    // Fill the pipeline window with whatever is left.
    while (!this.bugs.replicateOnTickOnly && this.sendAppend(m.from, false)) {}
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResponse(m: Message): void {
    const pr = this.prs.get(m.from);
    if (!pr) return;
    pr.recentActive = true;
    pr.probeSent = false;
    // A lost append would otherwise stall a full window forever; the heartbeat proves liveness.
    if (pr.state === "replicate" && pr.inflightsFull()) pr.inflights.shift();
    // In snapshot state a heartbeat answer resends nothing: every resent chunk draws an answer that
    // sends the next one, so each resend started another chain (50 chunks cost 285 messages,
    // 400 cost 32,320). The chunk in flight is resent on timeout only (retransmitSnapshotChunks).
    if (pr.state !== "snapshot" && pr.match < this.log.lastIndex() && !this.bugs.replicateOnTickOnly) {
      this.sendAppend(m.from);
    }
    if (m.context !== "") this.readAck(m.context, m.from);
  }

  /**
   * `offset` is what the follower holds. The next chunk goes out only when that moves the transfer
   * forward (or, on a reject, back to what the follower holds): an answer to a duplicate or to a
   * resent chunk, arriving after the transfer moved on, sends nothing. So at most one chunk is in
   * flight, and each answer sends at most one.
   */
  private handleSnapshotResponse(m: Message): void {
    const pr = this.prs.get(m.from);
    const s = pr?.pendingSnapshot;
    if (!pr || !s || pr.state !== "snapshot" || s.meta.index !== m.index) return;
    pr.recentActive = true;
    const held = Math.min(m.offset ?? 0, s.data.byteLength);
    const moves = m.reject ? held < pr.snapshotOffset : held > pr.snapshotOffset;
    if (!moves) return;
    if (!m.reject && !pr.snapshotResent) pr.snapshotRttTicks = pr.snapshotIdleTicks;
    pr.snapshotResent = false;
    pr.snapshotOffset = held;
    // Everything received: the follower installs it and answers with an appResp.
    if (held < s.data.byteLength) this.sendSnapshotChunk(m.from, pr);
  }

  /** Leader tick: resend a chunk left unanswered past its timeout, to a live follower. */
  private retransmitSnapshotChunks(): void {
    for (const [id, pr] of this.prs) {
      if (pr.state !== "snapshot" || id === this.id) continue;
      const timeout = Math.min(
        this.electionTicks,
        Math.max(this.snapshotRetransmitTicks, 2 * pr.snapshotRttTicks + 1),
      );
      if (++pr.snapshotIdleTicks < timeout || !pr.recentActive) continue;
      pr.snapshotResent = true;
      this.sendSnapshotChunk(id, pr);
    }
  }

  private sendTimeoutNow(to: string): void {
    this.send(emptyMessage("timeoutNow", this.id, to, this.term));
  }

  private bcastHeartbeat(context: string): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      this.send({
        ...emptyMessage("heartbeat", this.id, id, this.term),
        commit: Math.min(pr.match, this.log.committed),
        context,
      });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // ReadIndex (§6.4)

  private leaderRead(context: string, from: string): void {
    // Until it commits an entry of its term the leader does not know the true commit index.
    const known = this.bugs.readBeforeTermCommit === true || this.log.term(this.log.committed) === this.term;
    if (known && (this.voters.length === 1 || this.bugs.readIndexWithoutQuorum)) {
      this.deliverRead(from, this.log.committed, context);
      return;
    }
    if (!this.readOnly.add(context, from, known ? this.log.committed : -1)) {
      if (from === this.id) {
        throw new RaftError("READ_QUEUE_FULL", `${this.readsPendingMax} reads already wait for confirmation`);
      }
      return; // the follower's requester times out and retries
    }
  }

  private readAck(context: string, from: string): void {
    const done = this.readOnly.ack(context, from, this.voters, this.id, this.quorum());
    for (const r of done) this.deliverRead(r.from, r.index, r.context);
  }

  private deliverRead(from: string, index: number, context: string): void {
    if (from === this.id) this.readStates.push({ index, context });
    else this.send({ ...emptyMessage("readIndexResp", this.id, from, this.term), index, context });
  }

  // ---------------------------------------------------------------------------------------------
  // Configuration (§4.1: a configuration takes effect as soon as its entry is appended)

  /** Entries were appended (maybe replacing a suffix): keep the conf-entry list and config in step. */
  private noteAppended(es: Entry[]): void {
    if (this.confs.noteAppended(es)) this.applyConf(this.confs.current());
  }

  private applyConf(c: ConfState): void {
    this.voters = [...c.voters];
    this.learners = [...c.learners];
    syncProgress(
      this.prs,
      c,
      this.id,
      this.log.lastIndex() + 1,
      this.log.stableLastIndex(),
      this.inflightMessagesMax,
    );
    if (this.leadTransferee !== NONE && !c.voters.includes(this.leadTransferee)) this.leadTransferee = NONE;
    if (this.role === "leader") {
      assert(c.voters.includes(this.id), "leader removed from the configuration");
      // A smaller quorum may commit what is already replicated.
      this.maybeCommit();
    }
  }

  // ---------------------------------------------------------------------------------------------

  private checkCanPropose(): void {
    if (this.role !== "leader") {
      if (this.lead === NONE) throw new RaftError("PROPOSAL_DROPPED", `${this.id} knows no leader`);
      throw new RaftError("NOT_LEADER", `${this.id} is not the leader`, this.lead);
    }
    if (this.leadTransferee !== NONE) {
      throw new RaftError(
        "LEADER_TRANSFERRING",
        `transferring leadership to ${this.leadTransferee}`,
        this.id,
      );
    }
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }
}

/** Requests: they may leave before the Ready that holds them is durable (see ready()). */
const sentBeforePersist = new Set<string>(["app", "heartbeat", "snap", "preVote", "timeoutNow", "readIndex"]);
