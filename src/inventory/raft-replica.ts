// Owns the glue between the inventory state machine and its Raft node: commands become log
// entries, the node's errors become AppErrors the gateway understands (NOT_LEADER with the leader's
// id and address, UNAVAILABLE when the outcome is unknown), and reads wait for ReadIndex.
import { NodeError, type RaftNode, type StateMachine } from "../../raft/index.ts";
import { AppError } from "../shared/errors.ts";
import { failpoints } from "../shared/failpoints.ts";
import { type Command, decodeCommands, encodeCommands, entryBytesMax, entryCommandsMax } from "./commands.ts";
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
      const results = sm.applyAll(index, decodeCommands(data));
      if (onLowStock) {
        // This entry's events are the newest ones, those carrying its index.
        let first = sm.events.length;
        while (first > 0 && sm.events[first - 1]!.index === index) first--;
        for (const e of sm.events.slice(first)) onLowStock(e);
      }
      return results;
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

interface Queued {
  cmd: Command;
  resolve: (r: ApplyResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Commands submitted and not yet settled (queued, proposed or awaiting apply); beyond this, submit()
 * refuses with UNAVAILABLE and the caller retries. The node bounds entries in flight, and an entry
 * can carry a thousand commands: this bounds the commands.
 */
export const inFlightCommandsMax = 50_000;

export class RaftInventoryReplica implements InventoryReplica {
  /** Commands submitted in this turn of the event loop: they leave together in one entry. */
  private queue: Queued[] = [];
  private flushScheduled = false;
  private inFlight = 0;
  /** The last timestamp this replica stamped on a command it proposed. */
  private lastStampMs = 0;

  constructor(
    private readonly node: RaftNode,
    private readonly sm: InventoryStateMachine,
    /** Where members listen (the replicated configuration, else INVENTORY_PEERS). */
    private readonly members: { addressOf(id: string): string },
    /** Commands packed into one log entry at most (1: an entry per command, as before batching). */
    private readonly commandsPerEntryMax: number = entryCommandsMax,
  ) {
    if (!(commandsPerEntryMax >= 1 && commandsPerEntryMax <= entryCommandsMax)) {
      throw new Error(`commandsPerEntryMax must be 1-${entryCommandsMax}`);
    }
  }

  get id(): string {
    return this.node.id;
  }

  private addressOf(id: string): string {
    return this.members.addressOf(id);
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

  submit(cmd: Command): Promise<ApplyResult> {
    return new Promise((resolve, reject) => {
      if (this.inFlight >= inFlightCommandsMax) {
        reject(new AppError("UNAVAILABLE", "too many writes in flight; retry with the same request id"));
        return;
      }
      this.inFlight++;
      const settle = () => {
        this.inFlight--;
      };
      this.queue.push({
        cmd,
        resolve: (r) => {
          settle();
          resolve(r);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
      });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Packs the queued commands into entries of at most entryCommandsMax commands and entryBytesMax bytes. */
  private flush(): void {
    this.flushScheduled = false;
    const queued = this.queue;
    this.queue = [];
    // The idempotency window runs on leader timestamps in log order: stamp them non-decreasing, and
    // never behind what the log already carries (a new leader's clock may be behind the old one's).
    for (const q of queued) {
      const ts = Math.max(this.lastStampMs, this.sm.clockMs, q.cmd.ts);
      if (ts < this.lastStampMs) throw new Error("invariant: leader timestamps went backwards");
      q.cmd.ts = ts;
      this.lastStampMs = ts;
    }
    let at = 0;
    while (at < queued.length) {
      let n = Math.min(this.commandsPerEntryMax, queued.length - at);
      let data = encodeCommands(queued.slice(at, at + n).map((q) => q.cmd));
      // Commands are small (bounded fields), so halving converges fast and one always fits.
      while (data.byteLength > entryBytesMax && n > 1) {
        n = Math.ceil(n / 2);
        data = encodeCommands(queued.slice(at, at + n).map((q) => q.cmd));
      }
      const part = queued.slice(at, at + n);
      at += n;
      this.node.propose(data).then(
        (results) => {
          const rs = results as ApplyResult[];
          if (!Array.isArray(rs) || rs.length !== part.length) {
            // The entry applied is the one proposed (index and term matched): anything else is a bug,
            // and the unhandled rejection stops the process.
            throw new Error(`invariant: ${part.length} commands proposed, ${rs?.length} results applied`);
          }
          for (let i = 0; i < part.length; i++) part[i]!.resolve(rs[i]!);
        },
        (err: unknown) => {
          const e = this.toAppError(err);
          for (const q of part) q.reject(e);
        },
      );
    }
  }

  async linearizableRead<T>(read: (sm: InventoryStateMachine) => T): Promise<{ value: T; index: number }> {
    if (failpoints.readLocal) return this.staleRead(read);
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
      identity: this.node.identityState,
    };
  }
}
