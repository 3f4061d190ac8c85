// ClusterAdmin's refusals on a real (single-voter, in-process) Raft node: each unsafe request gets its
// stable code and changes nothing.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../../raft/index.ts";
import { RaftNode } from "../../raft/index.ts";
import { AppError } from "../shared/errors.ts";
import { ClusterAdmin, MemberDirectory, type Peer } from "./admin.ts";

const quiet = { info() {}, warn() {}, error() {} };
let nodes: RaftNode[] = [];
let dir = "";
afterEach(async () => {
  for (const n of nodes) await n.stop();
  nodes = [];
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Voters `ids` in-process, on an in-memory network; resolves with the leader's admin once it committed.
 * Whoever wins leads: a CI disk under load can take longer to sync than any one replica's election
 * timeout, so the test must not assume which replica that is (CI once waited 10 s for `a`, while
 * another replica led).
 */
async function cluster(ids: string[]) {
  dir = mkdtempSync(path.join(os.tmpdir(), "admin-"));
  const byId = new Map<string, RaftNode>();
  const peersOf = new Map<string, Peer[][]>();
  const directories = new Map<string, MemberDirectory>();
  for (const id of ids) {
    let snap: Snapshot | undefined;
    const seen: Peer[][] = [];
    peersOf.set(id, seen);
    const directory = new MemberDirectory(
      id,
      ids.map((i) => ({ id: i, address: `${i}.env:1` })),
      (p) => seen.push(p),
    );
    directories.set(id, directory);
    const node = new RaftNode({
      id,
      voters: ids,
      dataDir: path.join(dir, id),
      log: quiet,
      tickMs: 10,
      // 500 ms: well above a slow disk's sync, which every vote and every append waits for.
      electionTicks: 50,
      // The first id campaigns first, so the election is usually quick.
      random: () => (id === ids[0] ? 0 : 0.99),
      snapshots: {
        save: async (s) => {
          snap = s;
        },
        latest: async () => snap,
      },
      fsm: { apply: () => undefined, snapshot: () => new Uint8Array(0), restore: () => undefined },
      onConfChange: (c) => directory.update(c),
    });
    const post = (to: string, hello: boolean, messages: Message[]) => {
      const env = { ...node.envelope(to), hello };
      setImmediate(() => byId.get(to)?.receive(id, env, messages));
    };
    byId.set(id, node);
    nodes.push(node);
    await node.start({
      send: (to, m) => post(to, false, [structuredClone(m)]),
      hello: (to, ask) => post(to, ask, []),
    });
  }
  const deadline = Date.now() + 30_000;
  let leader: RaftNode | undefined;
  while (!leader) {
    if (Date.now() > deadline) throw new Error("no leader within 30 s");
    await new Promise((r) => setTimeout(r, 5));
    leader = [...byId.values()].find((n) => n.isLeader);
  }
  // The leader's first entry of its term must commit before any conf change.
  await leader.propose(new Uint8Array([1]));
  const admin = new ClusterAdmin({
    node: leader,
    directory: directories.get(leader.id)!,
    transferWaitMs: 5_000,
  });
  const others = ids.filter((i) => i !== leader.id);
  return { node: leader, leaderId: leader.id, others, admin, peers: peersOf.get(leader.id)!, byId };
}

const code = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => (e instanceof AppError ? e.code : String(e)),
  );

describe("ClusterAdmin", () => {
  it("a single voter: removing it or handing leadership to nobody is refused", async () => {
    const { node, admin } = await cluster(["a"]);
    expect(await code(admin.removeReplica("a"))).toBe("LAST_VOTER");
    expect(await code(admin.transferLeadership(""))).toBe("TRANSFER_INVALID");
    expect(node.status().conf).toEqual({ voters: ["a"], learners: [] });
  });

  it("refuses unsafe changes with stable codes, and the configuration stays as it was", async () => {
    const { node, leaderId, others, admin, peers, byId } = await cluster(["a", "b", "c"]);
    expect(await code(admin.removeReplica(leaderId))).toBe("REMOVE_LEADER");
    expect(await code(admin.removeReplica("zz"))).toBe("MEMBER_NOT_FOUND");
    expect(await code(admin.promoteLearner("zz"))).toBe("MEMBER_NOT_FOUND");
    expect(await code(admin.transferLeadership("zz"))).toBe("TRANSFER_INVALID");
    expect(await code(admin.transferLeadership(leaderId))).toBe("TRANSFER_INVALID");
    expect(
      await code(
        new ClusterAdmin({
          node: byId.get(others[0]!)!,
          directory: new MemberDirectory(others[0]!, [], () => {}),
          transferWaitMs: 1,
        }).addLearner("x", "h:1"),
      ),
    ).toBe("NOT_LEADER");
    // Two changes asked together: the second is refused while the first is in flight.
    const [first, second] = await Promise.all([
      code(admin.addLearner("x", "127.0.0.1:2")),
      code(admin.addLearner("y", "127.0.0.1:3")),
    ]);
    expect([first, second]).toEqual(["ok", "CONF_CHANGE_PENDING"]);
    expect(await code(admin.addLearner("x", "127.0.0.1:2"))).toBe("MEMBER_EXISTS");
    // x never answers: it is behind the commit index.
    expect(await code(admin.promoteLearner("x"))).toBe("LEARNER_NOT_CAUGHT_UP");
    expect(node.status().conf).toEqual({
      voters: ["a", "b", "c"],
      learners: ["x"],
      addresses: { x: "127.0.0.1:2" },
    });
    // The transport was pointed at the learner's replicated address, the others at the environment's.
    expect(peers.at(-1)).toEqual([
      ...others.map((id) => ({ id, address: `${id}.env:1` })),
      { id: "x", address: "127.0.0.1:2" },
    ]);
    const m = await admin.removeReplica("x");
    expect(m.members.map((x) => x.id)).toEqual(["a", "b", "c"]);
    expect(peers.at(-1)?.map((p) => p.id)).toEqual(others);
    // The most caught-up voter takes over, and the answer comes once it leads.
    const t = await admin.transferLeadership("");
    expect(others).toContain(t.leaderId);
    expect(byId.get(t.leaderId)!.isLeader).toBe(true);
  });
});
