// Owns membership administration of the inventory cluster: who the members are and where they
// listen (the environment's INVENTORY_PEERS for the initial ones, the replicated configuration for
// every member added at run time), and the admin operations — add a learner, promote it, remove a
// replica, transfer leadership — each committed through the Raft log and refused with a stable
// code when unsafe.
import type { Logger } from "pino";
import type { ConfState } from "../../raft/index.ts";
import { NodeError, RaftError, type RaftNode } from "../../raft/index.ts";
import type { InventoryAdminServiceServer, Membership } from "../gen/medisync/v1/inventory.ts";
import { AppError } from "../shared/errors.ts";
import { unary } from "../shared/grpc.ts";
import { clusterLimits } from "../shared/validation.ts";

export interface Peer {
  id: string;
  address: string;
}

/**
 * Addresses of the members: replicated ones win over the environment's (a replica re-added at a
 * new address must be reached there). Only current members are peers of the transport.
 */
export class MemberDirectory {
  private conf: ConfState = { voters: [], learners: [] };

  constructor(
    private readonly selfId: string,
    private readonly envPeers: Peer[],
    /** Hears the new peer list (without this replica) each time the configuration changes. */
    private readonly onPeers: (peers: Peer[]) => void,
  ) {}

  addressOf(id: string): string {
    return this.conf.addresses?.[id] ?? this.envPeers.find((p) => p.id === id)?.address ?? "";
  }

  update(conf: ConfState): void {
    this.conf = conf;
    const ids = [...conf.voters, ...conf.learners].filter((id) => id !== this.selfId);
    this.onPeers(ids.map((id) => ({ id, address: this.addressOf(id) })).filter((p) => p.address !== ""));
  }
}

export interface AdminOptions {
  node: RaftNode;
  directory: MemberDirectory;
  /** A transfer not done within this is reported UNAVAILABLE (the core aborts it after an election timeout). */
  transferWaitMs: number;
}

/** Leadership can move within this of the transfer being asked for; the wait polls this often. */
const transferPollMs = 5;

export class ClusterAdmin {
  constructor(private readonly o: AdminOptions) {}

  membership(index = 0): Membership {
    const st = this.o.node.status();
    const member = (id: string, role: string) => ({
      id,
      address: this.o.directory.addressOf(id),
      role,
      matchIndex: st.progress[id]?.match ?? 0,
    });
    return {
      members: [
        ...st.conf.voters.map((id) => member(id, "voter")),
        ...st.conf.learners.map((id) => member(id, "learner")),
      ],
      leaderId: st.leader,
      index,
    };
  }

  async addLearner(id: string, address: string): Promise<Membership> {
    const st = this.leaderStatus();
    if (st.conf.voters.includes(id) || st.conf.learners.includes(id)) {
      throw new AppError("MEMBER_EXISTS", `${id} is already a member`, "id");
    }
    return this.change({ type: "addLearner", nodeId: id, address });
  }

  async promoteLearner(id: string): Promise<Membership> {
    const st = this.leaderStatus();
    if (!st.conf.learners.includes(id)) {
      throw new AppError("MEMBER_NOT_FOUND", `${id} is not a learner`, "id");
    }
    return this.change({ type: "promoteLearner", nodeId: id });
  }

  async removeReplica(id: string): Promise<Membership> {
    const st = this.leaderStatus();
    const voter = st.conf.voters.includes(id);
    if (!voter && !st.conf.learners.includes(id))
      throw new AppError("MEMBER_NOT_FOUND", `${id} is not a member`, "id");
    if (voter && st.conf.voters.length === 1)
      throw new AppError("LAST_VOTER", `${id} is the last voter`, "id");
    if (id === st.id) {
      throw new AppError("REMOVE_LEADER", `${id} leads; transfer leadership first`, "id", {
        leaderId: st.id,
      });
    }
    return this.change({ type: "removeNode", nodeId: id });
  }

  /** Moves leadership to `to` (empty: the voter with the highest match index) and waits until it leads. */
  async transferLeadership(to: string): Promise<{ leaderId: string; term: number; elapsedMs: number }> {
    const st = this.leaderStatus();
    const target = to === "" ? mostCaughtUp(st.conf.voters, st.id, st.progress) : to;
    if (!target) throw new AppError("TRANSFER_INVALID", "there is no other voter to lead", "to");
    if (!st.conf.voters.includes(target) || target === st.id) {
      throw new AppError("TRANSFER_INVALID", `${target} is not another voter`, "to");
    }
    const t0 = performance.now();
    await this.o.node.transferLeadership(target).catch((err: unknown) => {
      throw toAppError(err, this.o.directory);
    });
    const deadline = t0 + this.o.transferWaitMs;
    // Leadership has moved once this replica knows of a leader other than itself (normally the target).
    while (this.o.node.isLeader || this.o.node.leader === "") {
      if (performance.now() > deadline) {
        throw new AppError(
          "UNAVAILABLE",
          `leadership did not move to ${target} within ${this.o.transferWaitMs} ms`,
        );
      }
      await new Promise((r) => setTimeout(r, transferPollMs));
    }
    const now = this.o.node.status();
    return { leaderId: now.leader, term: now.term, elapsedMs: Math.round(performance.now() - t0) };
  }

  private leaderStatus() {
    const st = this.o.node.status();
    if (st.role !== "leader")
      throw toAppError(new NodeError("NOT_LEADER", "not the leader", st.leader), this.o.directory);
    return st;
  }

  private async change(cc: Parameters<RaftNode["proposeConfChange"]>[0]): Promise<Membership> {
    try {
      const index = await this.o.node.proposeConfChange(cc);
      return this.membership(index);
    } catch (err) {
      throw toAppError(err, this.o.directory);
    }
  }
}

function mostCaughtUp(voters: string[], self: string, progress: Record<string, { match: number }>): string {
  let best = "";
  let bestMatch = -1;
  for (const v of voters) {
    const m = progress[v]?.match ?? 0;
    if (v !== self && m > bestMatch) {
      best = v;
      bestMatch = m;
    }
  }
  return best;
}

function toAppError(err: unknown, directory: MemberDirectory): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof RaftError) {
    if (err.code === "CONF_CHANGE_PENDING") return new AppError("CONF_CHANGE_PENDING", err.message);
    if (err.code === "LEARNER_NOT_CAUGHT_UP") return new AppError("LEARNER_NOT_CAUGHT_UP", err.message, "id");
    if (err.code === "TRANSFER_INVALID") return new AppError("TRANSFER_INVALID", err.message, "to");
    if (err.code === "CONF_CHANGE_INVALID") return new AppError("VALIDATION", err.message, "id");
  }
  if (err instanceof NodeError) {
    if (err.code === "NOT_LEADER") {
      return new AppError(
        "NOT_LEADER",
        err.leaderId ? `the leader is ${err.leaderId}` : "no leader right now",
        undefined,
        {
          leaderId: err.leaderId,
          leaderAddress: err.leaderId ? directory.addressOf(err.leaderId) : "",
        },
      );
    }
    return new AppError("UNAVAILABLE", `${err.message}; check the members and retry`);
  }
  return new AppError("INTERNAL", "membership change failed");
}

function memberId(v: string, field: string): string {
  const { memberIdMax, memberIdPattern } = clusterLimits;
  if (v.length === 0 || v.length > memberIdMax || !memberIdPattern.test(v)) {
    throw new AppError("VALIDATION", `${field} must be 1-${memberIdMax} of [A-Za-z0-9_-]`, field);
  }
  return v;
}

function address(v: string): string {
  const { addressMax } = clusterLimits;
  const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(v);
  if (v.length > addressMax || !m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new AppError(
      "VALIDATION",
      `address must be host:port (at most ${addressMax} characters)`,
      "address",
    );
  }
  return v;
}

export function createAdminHandlers(admin: ClusterAdmin, log: Logger): InventoryAdminServiceServer {
  return {
    listMembers: unary(log, "ListMembers", async () => ({ membership: admin.membership() })),
    addLearner: unary(log, "AddLearner", async (req) => ({
      membership: await admin.addLearner(memberId(req.id, "id"), address(req.address)),
    })),
    promoteLearner: unary(log, "PromoteLearner", async (req) => ({
      membership: await admin.promoteLearner(memberId(req.id, "id")),
    })),
    removeReplica: unary(log, "RemoveReplica", async (req) => ({
      membership: await admin.removeReplica(memberId(req.id, "id")),
    })),
    transferLeadership: unary(log, "TransferLeadership", async (req) =>
      admin.transferLeadership(req.to === "" ? "" : memberId(req.to, "to")),
    ),
  };
}
