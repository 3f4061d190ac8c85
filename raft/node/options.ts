// Owns RaftNode's configuration: its options and their defaults, and the failpoints and
// test-only bugs a harness may switch on to prove it catches each.
import type { ConfState } from "../core/types.ts";
import type { LogStore } from "../storage/log-store.ts";
import type { Scheduler } from "./scheduler.ts";
import type { NodeLogger, SnapshotStore, StateMachine, Transport } from "./seams.ts";

/**
 * Bugs planted on purpose (failpoints), so a chaos harness can prove it catches each one. The
 * application names and documents them (MediSync: src/shared/failpoints.ts); all off by default.
 */
export interface RaftFailpoints {
  /** The leader counts itself as a majority when it advances the commit index. */
  commitWithoutQuorum?: boolean;
  /**
   * The leader applies and acknowledges its own entries once they are in its own log, before
   * commit, and replicates them only every few heartbeat ticks (a primary with asynchronous replication).
   */
  ackBeforeCommit?: boolean;
}

/**
 * Bugs in the node's own rules, planted for the real-node simulator (raft/sim/node) to prove it
 * catches each; never set outside tests.
 */
export interface NodeTestOnlyBugs {
  /** The leader goes on (stepping answers, committing, applying) without waiting for its own write. */
  leaderCountsUndurable?: boolean;
  /** Every message leaves before this Ready's write is durable, votes and acknowledgements included. */
  ackBeforeDurable?: boolean;
  /** The log is compacted when a snapshot is taken, before the snapshot store has it. */
  compactBeforeSnapshotSaved?: boolean;
  /** Passed to the core (raft/core/raft.ts TestOnlyBugs). */
  readBeforeTermCommit?: boolean;
}

export interface RaftNodeOptions {
  id: string;
  /** Every replica of one cluster has the same; batches from another cluster are refused. */
  clusterId?: string;
  /** Initial voters (used only when there is no snapshot yet); later configurations come from the log. */
  voters: string[];
  dataDir: string;
  snapshots: SnapshotStore;
  /** Set by start(): the transport needs the node to deliver into, the node the transport to send. */
  transport?: Transport;
  fsm: StateMachine;
  log: NodeLogger;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  snapshotEveryEntries?: number;
  /** Also snapshot once this many bytes of entries were applied since the last (bounds the log's memory). */
  snapshotEveryBytes?: number;
  /** Entries kept behind a snapshot so a briefly lagging follower catches up by log, not by snapshot. */
  snapshotCatchUpEntries?: number;
  /** ...and at most this many bytes of them. */
  snapshotCatchUpBytes?: number;
  /** A snapshot is streamed to a follower in chunks of at most this many bytes (the core's default: 1 MiB). */
  snapshotChunkBytesMax?: number;
  /**
   * While snapshots cannot be saved (PostgreSQL down) the log cannot be compacted and grows in
   * memory: past this many bytes of entries applied since the last snapshot, proposals are refused
   * (OVERLOADED, the caller retries) until a save succeeds.
   */
  unsnapshottedBytesMax?: number;
  /** ...or this many entries. */
  unsnapshottedEntriesMax?: number;
  proposalTimeoutMs?: number;
  pendingProposalsMax?: number;
  inboxMessagesMax?: number;
  /** Bytes of peer messages waiting in the inbox (entry and snapshot data plus a per-message allowance). */
  inboxBytesMax?: number;
  /** Election jitter; defaults to the scheduler's. */
  random?: () => number;
  /** Timers, clock and randomness: Node's own unless a simulator drives the node in virtual time. */
  scheduler?: Scheduler;
  /** Opens the durable log; defaults to LevelDB in dataDir. */
  openLog?: () => Promise<LogStore>;
  /** Called on leader or term changes (the replica publishes its Redis hint from here). */
  onLeaderChange?: (leaderId: string, term: number, isSelf: boolean) => void;
  /**
   * The configuration changed here (a conf entry or a snapshot was applied), and once at start:
   * the server points its transport at the members' replicated addresses.
   */
  onConfChange?: (conf: ConfState) => void;
  /** A broken invariant: the default throws from the loop, which crashes the process — loudly. */
  onFatal?: (err: unknown) => void;
  failpoints?: RaftFailpoints;
  testOnlyBugs?: NodeTestOnlyBugs;
}

/** What an option left unset means. */
export const defaults = {
  clusterId: "raft",
  tickMs: 50,
  electionTicks: 6,
  heartbeatTicks: 1,
  snapshotEveryEntries: 20_000,
  snapshotEveryBytes: 64 * 1024 * 1024,
  snapshotCatchUpEntries: 5_000,
  snapshotCatchUpBytes: 32 * 1024 * 1024,
  unsnapshottedBytesMax: 256 * 1024 * 1024,
  unsnapshottedEntriesMax: 1_000_000,
  proposalTimeoutMs: 5_000,
  pendingProposalsMax: 20_000,
  inboxMessagesMax: 100_000,
  inboxBytesMax: 64 * 1024 * 1024,
};

/** The options with every default filled in (what the node and its parts read). */
export type ResolvedNodeOptions = RaftNodeOptions & typeof defaults;
