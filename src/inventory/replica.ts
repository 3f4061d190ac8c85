// Owns the seam between the inventory service and its replication: what the gRPC handlers need
// from "a replica of the inventory state machine", whatever runs underneath (the Raft node in
// production, a single in-process log in unit tests of the handlers).
import type { Command } from "./commands.ts";
import type { ApplyResult, InventoryStateMachine } from "./state-machine.ts";

export interface PeerStatus {
  id: string;
  address: string;
  matchIndex: number;
}

export interface ReplicaStatus {
  id: string;
  address: string;
  role: "leader" | "follower" | "candidate" | "pre-candidate" | "learner";
  term: number;
  leaderId: string;
  commitIndex: number;
  appliedIndex: number;
  lastIndex: number;
  peers: PeerStatus[];
  stateHash: string;
  /** member, joining or lost (raft/node/identity.ts). */
  identity: string;
}

export interface InventoryReplica {
  readonly id: string;
  /**
   * Replicates the command and resolves with its result once committed and applied here. Rejects
   * with AppError NOT_LEADER (meta: leaderId, leaderAddress when known) on a follower, or
   * UNAVAILABLE when the outcome is unknown (leadership lost before commit): the caller retries
   * with the same request id, which the state machine answers once.
   */
  submit(cmd: Command): Promise<ApplyResult>;
  /** Runs `read` once this replica has applied every write acknowledged before the call (ReadIndex). */
  linearizableRead<T>(read: (sm: InventoryStateMachine) => T): Promise<{ value: T; index: number }>;
  /** Runs `read` on whatever this replica has applied. */
  staleRead<T>(read: (sm: InventoryStateMachine) => T): { value: T; index: number };
  status(): ReplicaStatus;
}
