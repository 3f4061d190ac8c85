// Owns the glue between the inventory state machine and its Raft node: commands become log
// entries, the node's errors become AppErrors the gateway understands (NOT_LEADER with the leader's
// id and address, UNAVAILABLE when the outcome is unknown), and reads wait for ReadIndex.
import { NodeError, type RaftNode, type StateMachine } from "../../raft/node/node.ts";
import { AppError } from "../shared/errors.ts";
import { type Command, decodeCommand, encodeCommand } from "./commands.ts";
import type { InventoryReplica, ReplicaStatus } from "./replica.ts";
import type { ApplyResult, InventoryStateMachine, LowStockEvent } from "./state-machine.ts";

/**
 * Adapts the inventory state machine to the node's byte-level StateMachine. `onLowStock` hears each
 * low-stock event as its entry is applied (on every replica; the caller decides who acts on it).
 */
export function inventoryFsm(
  sm: InventoryStateMachine,
  onLowStock?: (e: LowStockEvent) => void,
): StateMachine {
  return {
    apply: (index, data) => {
      const before = sm.events.at(-1);
      const result = sm.apply(index, decodeCommand(data));
      const last = sm.events.at(-1);
      if (onLowStock && last && last !== before && last.index === index) onLowStock(last);
      return result;
    },
    snapshot: () => sm.snapshot(),
    restore: (data) => sm.restore(data),
  };
}

const roleNames: Record<string, ReplicaStatus["role"]> = {
  leader: "leader",
  follower: "follower",
  candidate: "candidate",
  preCandidate: "pre-candidate",
};

export class RaftInventoryReplica implements InventoryReplica {
  constructor(
    private readonly node: RaftNode,
    private readonly sm: InventoryStateMachine,
    private readonly peers: { id: string; address: string }[],
  ) {}

  get id(): string {
    return this.node.id;
  }

  private addressOf(id: string): string {
    return this.peers.find((p) => p.id === id)?.address ?? "";
  }

  private toAppError(err: unknown): AppError {
    if (err instanceof NodeError) {
      if (err.code === "NOT_LEADER") {
        const leaderId = err.leaderId || this.node.leader;
        return new AppError(
          "NOT_LEADER",
          leaderId ? `the leader is ${leaderId}` : "no leader right now",
          undefined,
          {
            leaderId,
            leaderAddress: leaderId ? this.addressOf(leaderId) : "",
          },
        );
      }
      return new AppError("UNAVAILABLE", `${err.message}; retry with the same request id`);
    }
    return err instanceof AppError ? err : new AppError("INTERNAL", "replica failed");
  }

  async submit(cmd: Command): Promise<ApplyResult> {
    try {
      return (await this.node.propose(encodeCommand(cmd))) as ApplyResult;
    } catch (err) {
      throw this.toAppError(err);
    }
  }

  async linearizableRead<T>(read: (sm: InventoryStateMachine) => T): Promise<{ value: T; index: number }> {
    try {
      await this.node.readIndex();
      // Applied ≥ index here; reading now sees every write committed before the request began.
      return { value: read(this.sm), index: this.node.applied };
    } catch (err) {
      throw this.toAppError(err);
    }
  }

  staleRead<T>(read: (sm: InventoryStateMachine) => T): { value: T; index: number } {
    return { value: read(this.sm), index: this.node.applied };
  }

  status(): ReplicaStatus {
    const st = this.node.status();
    const learner = st.conf.learners.includes(st.id);
    return {
      id: st.id,
      address: this.addressOf(st.id),
      role: learner ? "learner" : (roleNames[st.role] ?? "follower"),
      term: st.term,
      leaderId: st.leader,
      commitIndex: st.commit,
      appliedIndex: this.node.applied,
      lastIndex: st.lastIndex,
      peers: Object.entries(st.progress)
        .filter(([id]) => id !== st.id)
        .map(([id, p]) => ({ id, address: this.addressOf(id), matchIndex: p.match })),
      stateHash: this.sm.stateHash(),
    };
  }
}
