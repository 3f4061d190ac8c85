// Owns the core's data shapes: entries, hard/soft state, configuration, snapshots, messages and the
// Ready batch handed to the driver. Everything that crosses the wire or reaches storage is a plain,
// structured-cloneable object (numbers, strings, arrays, Uint8Array) because the transport encodes
// messages with v8.serialize and storage (raft/storage/level-log.ts) stores these shapes as they are.

/** Entry kinds; stored as a small integer (StoredEntry.type). */
export const EntryType = {
  Normal: 0,
  /** data is the complete new configuration (encodeConfState), effective as soon as appended. */
  ConfChange: 1,
  /** Empty entry each new leader appends so it can commit something of its own term (§5.4.2). */
  Noop: 2,
} as const;
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** Same shape as raft/storage/level-log.ts StoredEntry. */
export interface Entry {
  index: number;
  term: number;
  type: number;
  data: Uint8Array;
}

/** Same shape as StoredHardState; `vote` is "" when the node has not voted in `term`. */
export interface HardState {
  term: number;
  vote: string;
  commit: number;
}

export interface ConfState {
  voters: string[];
  learners: string[];
  /**
   * Members' network addresses, replicated with the configuration so a replica that joined at run
   * time is reachable by every peer, across restarts and snapshots. Absent for members known only
   * from the environment (a cluster's initial peers).
   */
  addresses?: Record<string, string>;
}

/** Same shape as raft/storage/pg-snapshots.ts SnapshotMeta. */
export interface SnapshotMeta {
  index: number;
  term: number;
  voters: string[];
  learners: string[];
  /** As ConfState.addresses. */
  addresses?: Record<string, string>;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export interface SoftState {
  leader: string;
  role: Role;
}

export type MessageType =
  | "vote"
  | "voteResp"
  | "preVote"
  | "preVoteResp"
  | "app"
  | "appResp"
  | "heartbeat"
  | "heartbeatResp"
  /** One chunk of a snapshot; `snapshot` carries its meta, `offset`/`data`/`total` the chunk. */
  | "snap"
  /** Chunk acknowledgement: `offset` is the next byte the follower expects. */
  | "snapResp"
  | "timeoutNow"
  /** Follower → leader: confirm leadership for a read; `context` identifies it. */
  | "readIndex"
  | "readIndexResp";

/**
 * One message between replicas. Fields a type does not use are 0 / "" / false / [] so every message
 * has the same shape (cheap to build, no optional-field checks on hot paths).
 */
export interface Message {
  type: MessageType;
  from: string;
  to: string;
  term: number;
  /** app: term of entry `index`; vote: candidate's last log term; appResp reject: hint term. */
  logTerm: number;
  /** app: index preceding `entries`; vote: candidate's last index; appResp: match or rejected index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** appResp reject: the follower's guess of where logs may match (fast backtracking). */
  rejectHint: number;
  /** heartbeat(Resp)/readIndex(Resp): read request identifier; vote: "transfer" forces past the lease. */
  context: string;
  snapshot?: SnapshotMeta;
  offset?: number;
  total?: number;
  data?: Uint8Array;
}

export interface ReadState {
  /** Serve the read once the state machine has applied at least this index. */
  index: number;
  context: string;
}

/** What the driver must do, in order: persist (hardState, entries, snapshot) → send → apply → advance. */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  /** Append durably; the first may overwrite (truncate) a conflicting suffix. */
  entries: Entry[];
  /** Install durably (replaces the log up to its index) and restore the state machine from it. */
  snapshot?: Snapshot;
  /**
   * May leave at once, before the persistence above (a leader's appends and heartbeats, pre-vote
   * requests, forwarded reads): they promise nothing that a crash could take back.
   */
  messages: Message[];
  /**
   * Send only after the persistence above is durable: answers (votes, appends, heartbeats,
   * snapshots, reads) and everything in a Ready that changes the term or vote or installs a
   * snapshot. The leader's own acknowledgement of its entries is likewise counted only at advance().
   */
  messagesAfterPersist: Message[];
  /** Apply to the state machine, in order. */
  committedEntries: Entry[];
  readStates: ReadState[];
}

export type ProgressState = "probe" | "replicate" | "snapshot";

export interface PeerStatus {
  match: number;
  next: number;
  state: ProgressState;
  learner: boolean;
  recentActive: boolean;
}

export interface Status {
  id: string;
  role: Role;
  term: number;
  vote: string;
  leader: string;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  conf: ConfState;
  /** Only on the leader. */
  progress: Record<string, PeerStatus>;
  leadTransferee: string;
  /** Leader: ReadIndex requests waiting for confirmation (bounded by readsPendingMax). */
  readsPending: number;
}

export type RaftErrorCode =
  | "NOT_LEADER"
  | "PROPOSAL_DROPPED"
  | "LEADER_TRANSFERRING"
  | "CONF_CHANGE_PENDING"
  | "CONF_CHANGE_INVALID"
  | "LEARNER_NOT_CAUGHT_UP"
  | "TRANSFER_INVALID"
  /** The leader already holds readsPendingMax unconfirmed reads: retry later. */
  | "READ_QUEUE_FULL";

/** Proposal-path errors with a stable `code`; `leaderId` names the leader when one is known. */
export class RaftError extends Error {
  override readonly name = "RaftError";
  constructor(
    readonly code: RaftErrorCode,
    message: string,
    readonly leaderId = "",
  ) {
    super(message);
  }
}

export type ConfChangeType = "addVoter" | "addLearner" | "removeNode" | "promoteLearner";

export interface ConfChange {
  type: ConfChangeType;
  nodeId: string;
  /** addLearner/addVoter: where the new member listens; replicated in the configuration. */
  address?: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeConfState(c: ConfState): Uint8Array {
  const addresses = c.addresses && Object.keys(c.addresses).length > 0 ? { addresses: c.addresses } : {};
  return enc.encode(JSON.stringify({ voters: c.voters, learners: c.learners, ...addresses }));
}

export function decodeConfState(b: Uint8Array): ConfState {
  const c = JSON.parse(dec.decode(b)) as ConfState;
  return copyConf(c);
}

/** A deep copy; `addresses` only when there are any (older entries and snapshots have none). */
export function copyConf(c: ConfState): ConfState {
  const out: ConfState = { voters: [...c.voters], learners: [...c.learners] };
  if (c.addresses && Object.keys(c.addresses).length > 0) out.addresses = { ...c.addresses };
  return out;
}

export function emptyMessage(type: MessageType, from: string, to: string, term: number): Message {
  return {
    type,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: "",
  };
}
