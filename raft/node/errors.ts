// Owns the errors RaftNode hands its callers, and how the core's fail-fast RaftErrors map onto
// them: the codes a service turns into answers (retry elsewhere, retry later, outcome unknown).
import { RaftError } from "../core/types.ts";

export type NodeErrorCode =
  | "NOT_LEADER"
  /** The command may or may not have been applied (leadership lost, timeout): retry with the same request id. */
  | "OUTCOME_UNKNOWN"
  | "OVERLOADED"
  | "STOPPED";

export class NodeError extends Error {
  override readonly name = "NodeError";
  constructor(
    readonly code: NodeErrorCode,
    message: string,
    readonly leaderId = "",
  ) {
    super(message);
  }
}

export function toNodeError(err: unknown): unknown {
  if (err instanceof RaftError) {
    if (err.code === "READ_QUEUE_FULL") return new NodeError("OVERLOADED", err.message);
    if (err.code === "NOT_LEADER" || err.code === "PROPOSAL_DROPPED" || err.code === "LEADER_TRANSFERRING") {
      return new NodeError("NOT_LEADER", err.message, err.leaderId);
    }
  }
  return err;
}
