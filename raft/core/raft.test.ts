// One test per rule of Figure 2 of the Raft paper (plus §5.4.2 and Figure 8), driven by stepping
// single cores with hand-made messages; then the features beyond Figure 2 on a scripted network.
import { describe, expect, it } from "vitest";
import { type RaftConfig, RaftCore } from "./raft.ts";
import { MemoryStorage } from "./storage.ts";
import { figure8Scenario, seededRandom, TestNet } from "./testing.ts";
import { type Entry, emptyMessage, type Message, type MessageType, RaftError, type Ready } from "./types.ts";

const enc = new TextEncoder();

function ents(spec: [number, number][]): Entry[] {
  return spec.map(([index, term]) => ({ index, term, type: 0, data: enc.encode(`${index}/${term}`) }));
}

interface Setup {
  log?: [number, number][];
  term?: number;
  vote?: string;
  commit?: number;
  opts?: Partial<RaftConfig>;
}

function mk(id: string, voters: string[], s: Setup = {}) {
  const disk = new MemoryStorage({ voters, learners: [] });
  disk.append(ents(s.log ?? []));
  disk.setHardState({ term: s.term ?? 0, vote: s.vote ?? "", commit: s.commit ?? 0 });
  const core = new RaftCore({
    id,
    storage: disk,
    electionTicks: 10,
    heartbeatTicks: 1,
    random: seededRandom(42),
    preVote: false,
    checkQuorum: false,
    ...s.opts,
  });
  /** Runs the driver contract once and returns the Ready (persisted, then advanced). */
  const drain = (): Ready => {
    const out: Ready = {
      entries: [],
      messages: [],
      messagesAfterPersist: [],
      committedEntries: [],
      readStates: [],
    };
    while (core.hasReady()) {
      const rd = core.ready();
      if (rd.snapshot) disk.applySnapshot(rd.snapshot);
      disk.append(rd.entries);
      if (rd.hardState) {
        disk.setHardState(rd.hardState);
        out.hardState = rd.hardState;
      }
      out.entries.push(...rd.entries);
      // Both lists, in the order they may leave (the split itself has its own tests).
      out.messages.push(...rd.messages, ...rd.messagesAfterPersist);
      out.committedEntries.push(...rd.committedEntries);
      out.readStates.push(...rd.readStates);
      core.advance(rd);
    }
    return out;
  };
  return { core, disk, drain };
}

function msg(
  type: MessageType,
  from: string,
  to: string,
  term: number,
  extra: Partial<Message> = {},
): Message {
  return { ...emptyMessage(type, from, to, term), ...extra };
}

const ABC = ["a", "b", "c"];

/** A leader "a" of term `term`+1 over a, b, c whose log was `log` before its no-op. */
function leader(log: [number, number][], term: number, opts: Partial<RaftConfig> = {}) {
  const n = mk("a", ABC, { log, term, opts });
  n.core.campaign();
  n.drain();
  n.core.step(msg("voteResp", "b", "a", term + 1));
  const rd = n.drain();
  expect(n.core.currentRole).toBe("leader");
  return { ...n, rd };
}

describe("Figure 2: RequestVote receiver", () => {
  it("1. does not grant a vote to a candidate with an older term", () => {
    const { core, drain } = mk("a", ABC, { term: 5 });
    core.step(msg("vote", "b", "a", 3, { index: 10, logTerm: 3 }));
    const rd = drain();
    expect(rd.messages.filter((m) => m.type === "voteResp" && !m.reject)).toEqual([]);
    expect(core.status().vote).toBe("");
    expect(core.currentTerm).toBe(5);
  });

  it("2. grants when votedFor is null and the candidate's log is up to date; persists the vote with the reply", () => {
    const { core, drain } = mk("a", ABC, { log: [[1, 1]], term: 1 });
    core.step(msg("vote", "b", "a", 2, { index: 1, logTerm: 1 }));
    const rd = drain();
    expect(rd.hardState).toEqual({ term: 2, vote: "b", commit: 0 });
    expect(rd.messages).toMatchObject([{ type: "voteResp", to: "b", term: 2, reject: false }]);
  });

  it("2. does not vote for a second candidate in the same term, but repeats its vote to the first", () => {
    const { core, drain } = mk("a", ABC, { term: 2, vote: "b" });
    core.step(msg("vote", "c", "a", 2));
    expect(drain().messages).toMatchObject([{ type: "voteResp", to: "c", reject: true }]);
    core.step(msg("vote", "b", "a", 2));
    expect(drain().messages).toMatchObject([{ type: "voteResp", to: "b", reject: false }]);
  });

  it("2. §5.4.1 up-to-date: a later last term wins even with a shorter log", () => {
    const { core, drain } = mk("a", ABC, {
      log: [
        [1, 1],
        [2, 2],
        [3, 2],
      ],
      term: 2,
    });
    core.step(msg("vote", "b", "a", 4, { index: 1, logTerm: 3 }));
    expect(drain().messages).toMatchObject([{ type: "voteResp", reject: false }]);
  });

  it("2. §5.4.1 up-to-date: same last term but shorter log, or an earlier last term, is refused", () => {
    for (const [index, logTerm] of [
      [2, 2],
      [9, 1],
    ] as const) {
      const { core, drain } = mk("a", ABC, {
        log: [
          [1, 1],
          [2, 2],
          [3, 2],
        ],
        term: 2,
      });
      core.step(msg("vote", "b", "a", 3, { index, logTerm }));
      expect(drain().messages).toMatchObject([{ type: "voteResp", reject: true }]);
    }
  });

  it("the voteWithoutUpToDateCheck test switch really breaks the rule", () => {
    const { core, drain } = mk("a", ABC, {
      log: [
        [1, 1],
        [2, 2],
      ],
      term: 2,
      opts: { testOnlyBugs: { voteWithoutUpToDateCheck: true } },
    });
    core.step(msg("vote", "b", "a", 3, { index: 1, logTerm: 1 }));
    expect(drain().messages).toMatchObject([{ type: "voteResp", reject: false }]);
  });
});

describe("Figure 2: AppendEntries receiver", () => {
  it("1. refuses an older term: nothing appended, and the stale leader learns the newer term", () => {
    const { core, drain } = mk("a", ABC, { log: [[1, 1]], term: 5, opts: { checkQuorum: true } });
    core.step(msg("app", "b", "a", 3, { index: 1, logTerm: 1, entries: ents([[2, 3]]) }));
    const rd = drain();
    expect(rd.entries).toEqual([]);
    expect(rd.messages).toMatchObject([{ type: "appResp", to: "b", term: 5 }]);
    expect(core.lastIndex).toBe(1);
  });

  it("2. rejects when the log lacks prevLogIndex/prevLogTerm, with a conflict hint for fast backtracking", () => {
    const { core, drain } = mk("a", ABC, {
      log: [
        [1, 1],
        [2, 1],
        [3, 2],
        [4, 2],
      ],
      term: 3,
    });
    // Leader's log has term 3 at index 6: we lack 6; the hint is our last index with term ≤ 3.
    core.step(msg("app", "b", "a", 3, { index: 6, logTerm: 3 }));
    expect(drain().messages).toMatchObject([
      { type: "appResp", reject: true, index: 6, rejectHint: 4, logTerm: 2 },
    ]);
    // Leader has term 1 at index 4 (we have 2): skip our whole term-2 run, hint index 2 (term 1).
    core.step(msg("app", "b", "a", 3, { index: 4, logTerm: 1 }));
    expect(drain().messages).toMatchObject([
      { type: "appResp", reject: true, index: 4, rejectHint: 2, logTerm: 1 },
    ]);
  });

  it("3. deletes a conflicting entry and everything after it", () => {
    const { core, drain } = mk("a", ABC, {
      log: [
        [1, 1],
        [2, 1],
        [3, 1],
      ],
      term: 1,
    });
    core.step(msg("app", "b", "a", 2, { index: 1, logTerm: 1, entries: ents([[2, 2]]) }));
    const rd = drain();
    expect(rd.entries.map((e) => [e.index, e.term])).toEqual([[2, 2]]);
    expect(core.lastIndex).toBe(2);
    expect(core.logTerm(2)).toBe(2);
    expect(rd.messages).toMatchObject([{ type: "appResp", index: 2, reject: false }]);
  });

  it("4. appends new entries; entries it already has (a stale, reordered append) truncate nothing", () => {
    const { core, drain } = mk("a", ABC, {
      log: [
        [1, 1],
        [2, 1],
        [3, 1],
      ],
      term: 1,
    });
    core.step(
      msg("app", "b", "a", 1, {
        index: 0,
        logTerm: 0,
        entries: ents([
          [1, 1],
          [2, 1],
        ]),
      }),
    );
    expect(drain().entries).toEqual([]);
    expect(core.lastIndex).toBe(3);
    core.step(msg("app", "b", "a", 1, { index: 3, logTerm: 1, entries: ents([[4, 1]]) }));
    expect(drain().entries.map((e) => e.index)).toEqual([4]);
  });

  it("5. leaderCommit > commitIndex → commitIndex = min(leaderCommit, index of last new entry)", () => {
    const { core, drain } = mk("a", ABC, { term: 1 });
    core.step(
      msg("app", "b", "a", 1, {
        index: 0,
        logTerm: 0,
        entries: ents([
          [1, 1],
          [2, 1],
        ]),
        commit: 5,
      }),
    );
    const rd = drain();
    expect(core.committed).toBe(2);
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1, 2]);
    core.step(msg("app", "b", "a", 1, { index: 2, logTerm: 1, commit: 1 }));
    drain();
    expect(core.committed).toBe(2); // never decreases
  });
});

describe("Figure 2: rules for all servers", () => {
  it("commitIndex > lastApplied → apply log[lastApplied+1], in order, once", () => {
    const { core, drain } = mk("a", ABC, { log: ents3(), term: 1 });
    core.step(msg("heartbeat", "b", "a", 1, { commit: 2 }));
    expect(drain().committedEntries.map((e) => e.index)).toEqual([1, 2]);
    core.step(msg("heartbeat", "b", "a", 1, { commit: 3 }));
    expect(drain().committedEntries.map((e) => e.index)).toEqual([3]);
    expect(core.applied).toBe(3);
  });

  it("a request or response with a higher term → adopt it and become follower", () => {
    const l = leader([[1, 1]], 1);
    l.core.step(msg("appResp", "b", "a", 7));
    expect(l.core.currentRole).toBe("follower");
    expect(l.core.currentTerm).toBe(7);
    const c = mk("a", ABC, { term: 1 });
    c.core.campaign();
    c.core.step(msg("heartbeat", "b", "a", 9));
    expect(c.core.currentRole).toBe("follower");
    expect(c.core.currentTerm).toBe(9);
    expect(c.core.leader).toBe("b");
  });
});

function ents3(): [number, number][] {
  return [
    [1, 1],
    [2, 1],
    [3, 1],
  ];
}

describe("Figure 2: followers", () => {
  it("the election timer resets on AppendEntries from the leader or on granting a vote — not on refusing one", () => {
    const { core, drain } = mk("a", ABC, { log: ents3(), term: 1 });
    for (let i = 0; i < 9; i++) core.tick();
    // A higher-term candidate with a stale log: adopt its term, refuse, keep counting.
    core.step(msg("vote", "b", "a", 5, { index: 1, logTerm: 1 }));
    expect(drain().messages).toMatchObject([{ type: "voteResp", reject: true }]);
    let ticks = 0;
    while (core.currentRole === "follower") {
      core.tick();
      ticks++;
    }
    expect(ticks).toBeLessThanOrEqual(20 - 9);
    // Granting a vote does reset it.
    const g = mk("a", ABC, { log: ents3(), term: 1 });
    for (let i = 0; i < 9; i++) g.core.tick();
    g.core.step(msg("vote", "b", "a", 5, { index: 3, logTerm: 1 }));
    let ticks2 = 0;
    while (g.core.currentRole === "follower") {
      g.core.tick();
      ticks2++;
    }
    expect(ticks2).toBeGreaterThanOrEqual(10);
  });
});

describe("Figure 2: candidates", () => {
  it("on conversion: increment term, vote for self, send RequestVote to all other servers", () => {
    const { core, drain } = mk("a", ABC, { log: ents3(), term: 1 });
    core.campaign();
    const rd = drain();
    expect(core.currentRole).toBe("candidate");
    expect(rd.hardState).toMatchObject({ term: 2, vote: "a" });
    expect(rd.messages.map((m) => [m.type, m.to, m.term, m.index, m.logTerm])).toEqual([
      ["vote", "b", 2, 3, 1],
      ["vote", "c", 2, 3, 1],
    ]);
  });

  it("votes from a majority → leader", () => {
    const { core, drain } = mk("a", ["a", "b", "c", "d", "e"], { term: 1 });
    core.campaign();
    drain();
    core.step(msg("voteResp", "b", "a", 2));
    expect(core.currentRole).toBe("candidate");
    core.step(msg("voteResp", "c", "a", 2, { reject: true }));
    core.step(msg("voteResp", "d", "a", 2));
    expect(core.currentRole).toBe("leader");
  });

  it("rejections from a majority → back to follower", () => {
    const { core, drain } = mk("a", ABC, { term: 1 });
    core.campaign();
    drain();
    core.step(msg("voteResp", "b", "a", 2, { reject: true }));
    core.step(msg("voteResp", "c", "a", 2, { reject: true }));
    expect(core.currentRole).toBe("follower");
  });

  it("AppendEntries from the new leader of this term → follower", () => {
    const { core, drain } = mk("a", ABC, { term: 1 });
    core.campaign();
    drain();
    core.step(msg("app", "b", "a", 2, { index: 0, logTerm: 0, entries: ents([[1, 2]]) }));
    expect(core.currentRole).toBe("follower");
    expect(core.leader).toBe("b");
  });

  it("election timeout elapses → start a new election; timeouts are randomized in [T, 2T)", () => {
    const { core } = mk("a", ABC, { term: 1 });
    let ticks = 0;
    while (core.currentRole === "follower") {
      core.tick();
      ticks++;
    }
    expect(ticks).toBeGreaterThanOrEqual(10);
    expect(ticks).toBeLessThan(20);
    expect(core.currentTerm).toBe(2);
    for (let i = 0; i < 20; i++) core.tick();
    expect(core.currentTerm).toBe(3); // split vote: try again
  });
});

describe("Figure 2: leaders", () => {
  it("upon election: append a no-op of the new term and send AppendEntries to each server", () => {
    const { core, rd } = leader(ents3(), 1);
    expect(core.lastIndex).toBe(4);
    expect(core.logTerm(4)).toBe(2);
    const apps = rd.messages.filter((m) => m.type === "app");
    expect(apps.map((m) => [m.to, m.index, m.logTerm, m.entries.map((e) => e.index)])).toEqual([
      ["b", 3, 1, [4]],
      ["c", 3, 1, [4]],
    ]);
  });

  it("sends heartbeats every heartbeatTicks while idle", () => {
    const { core, drain } = leader([], 0, { heartbeatTicks: 2 });
    core.tick();
    expect(drain().messages).toEqual([]);
    core.tick();
    expect(drain().messages.map((m) => [m.type, m.to])).toEqual([
      ["heartbeat", "b"],
      ["heartbeat", "c"],
    ]);
  });

  it("command from a client: append to the local log, then replicate", () => {
    const { core, drain } = leader([], 0);
    core.step(msg("appResp", "b", "a", 1, { index: 1 })); // b is now in replicate state
    drain();
    const r = core.propose(enc.encode("x"));
    expect(r).toEqual({ index: 2, term: 1 });
    const rd = drain();
    expect(rd.entries.map((e) => e.index)).toEqual([2]);
    expect(rd.messages.find((m) => m.to === "b")).toMatchObject({ type: "app", index: 1, logTerm: 1 });
  });

  it("successful reply → update matchIndex and nextIndex for the follower", () => {
    const { core, drain } = leader(ents3(), 1);
    core.step(msg("appResp", "b", "a", 2, { index: 4 }));
    drain();
    expect(core.status().progress.b).toMatchObject({ match: 4, next: 5, state: "replicate" });
  });

  it("reply failed on log inconsistency → decrement nextIndex (by the hint) and retry", () => {
    const { core, drain } = leader(
      [
        [1, 1],
        [2, 1],
        [3, 2],
        [4, 2],
      ],
      2,
    );
    // b rejects the probe at 4 and says its log has term 1 up to index 2 (hint).
    core.step(msg("appResp", "b", "a", 3, { index: 4, reject: true, rejectHint: 2, logTerm: 1 }));
    const rd = drain();
    expect(core.status().progress.b?.next).toBe(3);
    expect(rd.messages).toMatchObject([{ type: "app", to: "b", index: 2, logTerm: 1 }]);
  });

  it("commit N when a majority has matchIndex ≥ N and log[N].term == currentTerm", () => {
    const { core, drain } = leader([], 0);
    core.propose(enc.encode("x"));
    drain();
    core.step(msg("appResp", "b", "a", 1, { index: 2 }));
    const rd = drain();
    expect(core.committed).toBe(2);
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1, 2]);
  });
});

describe("§5.4.2: never commit an older term's entry by counting replicas", () => {
  it("an old-term entry on a majority stays uncommitted until an entry of the current term is", () => {
    const { core, drain } = leader(
      [
        [1, 1],
        [2, 1],
      ],
      1,
    );
    core.step(msg("appResp", "b", "a", 2, { index: 2 })); // b has 1..2 (term 1): a majority
    drain();
    expect(core.committed).toBe(0);
    core.step(msg("appResp", "b", "a", 2, { index: 3 })); // b has the term-2 no-op
    drain();
    expect(core.committed).toBe(3);
  });

  it("with the countOldTermEntries test switch the same step commits index 2 (the bug)", () => {
    const { core, drain } = leader(
      [
        [1, 1],
        [2, 1],
      ],
      1,
      { testOnlyBugs: { countOldTermEntries: true } },
    );
    core.step(msg("appResp", "b", "a", 2, { index: 2 }));
    drain();
    expect(core.committed).toBe(2);
  });

  it("Figure 8: the correct leader commits nothing, and no committed entry is lost", () => {
    const r = figure8Scenario();
    expect(r.s1CommitAfterCopy).toBe(1);
    expect(r.violation).toBeUndefined();
  });

  it("Figure 8 with countOldTermEntries: a committed entry is overwritten", () => {
    const r = figure8Scenario({ testOnlyBugs: { countOldTermEntries: true } });
    expect(r.s1CommitAfterCopy).toBe(2);
    expect(r.violation).toMatch(/applied term 2 at 2, another node term 1/);
  });
});

describe("beyond Figure 2", () => {
  const three = (opts = {}) => {
    const net = new TestNet(["s1", "s2", "s3"], opts);
    net.elect("s1");
    return net;
  };

  it("proposeBatch replicates many entries with one append per follower, and they all commit", () => {
    const net = three();
    net.deliverAll();
    const leader = net.core("s1");
    const before = leader.lastIndex;
    const at = leader.proposeBatch([enc.encode("a"), enc.encode("b"), enc.encode("c")]);
    expect(at.map((x) => x.index)).toEqual([before + 1, before + 2, before + 3]);
    const rd = leader.ready();
    const appends = rd.messages.filter((m) => m.type === "app");
    expect(appends.map((m) => m.to).sort()).toEqual(["s2", "s3"]);
    expect(appends.every((m) => m.entries.length === 3)).toBe(true);
    net.queue.push(...rd.messages);
    net.disks.get("s1")!.append(rd.entries);
    leader.advance(rd);
    net.deliverAll();
    expect(leader.committed).toBe(before + 3);
    expect(() => net.core("s2").proposeBatch([enc.encode("x")])).toThrow(RaftError);
  });

  it("proposals fail fast with a typed error: NOT_LEADER names the leader, PROPOSAL_DROPPED without one", () => {
    const net = three();
    const err = (() => {
      try {
        net.core("s2").propose(enc.encode("x"));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(RaftError);
    expect(err).toMatchObject({ code: "NOT_LEADER", leaderId: "s1" });
    const lone = mk("z", ["z", "y", "x"]);
    expect(() => lone.core.propose(enc.encode("x"))).toThrow(
      expect.objectContaining({ code: "PROPOSAL_DROPPED" }),
    );
  });

  it("PreVote (§9.6): a partitioned node does not inflate its term and cannot disrupt on return", () => {
    const net = three({ preVote: true });
    net.isolate("s3");
    for (let i = 0; i < 100; i++) net.tick("s3");
    net.deliverAll();
    expect(net.core("s3").currentTerm).toBe(1);
    net.heal();
    net.tick("s1");
    net.deliverAll();
    expect(net.core("s1").currentRole).toBe("leader");
    expect(net.core("s1").currentTerm).toBe(1);
  });

  it("CheckQuorum (§6.2): a leader cut off from the majority steps down within an election timeout", () => {
    const net = three({ checkQuorum: true });
    net.isolate("s1");
    for (let i = 0; i < 25 && net.core("s1").currentRole === "leader"; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    expect(net.core("s1").currentRole).toBe("follower");
  });

  it("CheckQuorum lease: a follower hearing from its leader ignores a disruptive candidate", () => {
    const net = three({ checkQuorum: true });
    net.core("s2").step(msg("vote", "s3", "s2", 5, { index: 100, logTerm: 100 }));
    net.flush("s2");
    expect(net.core("s2").currentTerm).toBe(1);
  });

  it("ReadIndex (§6.4): released only after a heartbeat round reaches a quorum", () => {
    const net = three();
    net.core("s1").readIndex("r1");
    net.flush("s1");
    // The heartbeats carry a read round the leader numbers, not the request's context.
    const heartbeats = net.queue.filter((m) => m.type === "heartbeat" && m.context === "1");
    expect(heartbeats.length).toBe(2);
    let got: { index: number; context: string }[] = [];
    net.filter = () => true;
    // Deliver but capture s1's Ready by hand.
    const c = net.core("s1");
    for (const m of net.queue.splice(0)) {
      net.core(m.to).step(m);
    }
    for (const id of ["s2", "s3"]) {
      const rd = net.core(id).ready();
      for (const m of [...rd.messages, ...rd.messagesAfterPersist]) c.step(m);
      net.core(id).advance(rd);
    }
    const rd = c.ready();
    got = rd.readStates;
    c.advance(rd);
    expect(got).toEqual([{ index: 1, context: "r1" }]);
  });

  it("ReadIndex from a follower is forwarded and answered with the leader's commit index", () => {
    const net = three();
    net.propose("s1", enc.encode("x"));
    net.deliverAll();
    net.core("s2").readIndex("r2");
    let states: { index: number; context: string }[] = [];
    const s2 = net.core("s2");
    net.flush("s1");
    net.deliverAll();
    // The readIndexResp was applied by flush; capture via a fresh read and a manual loop.
    s2.readIndex("r3");
    for (let i = 0; i < 10; i++) {
      while (s2.hasReady()) {
        const rd = s2.ready();
        states = states.concat(rd.readStates);
        net.queue.push(...rd.messages);
        s2.advance(rd);
      }
      const m = net.queue.shift();
      if (!m) break;
      net.core(m.to).step(m);
      if (m.to !== "s2") net.flush(m.to);
    }
    expect(states).toContainEqual({ index: 2, context: "r3" });
  });

  it("leadership transfer (§3.10): proposals stop during it and the target takes over", () => {
    const net = three();
    net.core("s1").transferLeadership("s2");
    expect(() => net.core("s1").propose(enc.encode("x"))).toThrow(
      expect.objectContaining({ code: "LEADER_TRANSFERRING" }),
    );
    net.deliverAll();
    expect(net.core("s2").currentRole).toBe("leader");
    expect(net.core("s1").currentRole).toBe("follower");
  });

  it("snapshots (§5): a follower behind the compaction point gets the snapshot in chunks", () => {
    const net = three({ snapshotChunkBytesMax: 3 });
    net.crash("s3");
    for (let i = 0; i < 5; i++) net.propose("s1", enc.encode(`v${i}`));
    net.deliverAll();
    const c1 = net.core("s1");
    expect(c1.committed).toBe(6);
    const meta = c1.snapshotMeta(6);
    net.disks.get("s1")!.createSnapshot({ meta, data: enc.encode("state-at-6") });
    net.start("s3");
    let chunks = 0;
    net.filter = (m) => {
      if (m.type === "snap") chunks++;
      return true;
    };
    for (let i = 0; i < 5; i++) {
      net.tick("s1");
      net.deliverAll();
    }
    expect(chunks).toBe(Math.ceil("state-at-6".length / 3));
    expect(net.disks.get("s3")!.snapshot().meta.index).toBe(6);
    expect(new TextDecoder().decode(net.disks.get("s3")!.snapshot().data)).toBe("state-at-6");
    expect(net.core("s3").committed).toBe(6);
  });

  it("membership (§4.1): learner added, promoted once caught up, node removed; one change at a time", () => {
    // s4 starts with an empty configuration, as a new server would.
    const net = new TestNet(["s1", "s2", "s3", "s4"], {}, ["s1", "s2", "s3"]);
    net.elect("s1");
    const l = net.core("s1");
    l.proposeConfChange({ type: "addLearner", nodeId: "s4" });
    expect(() => l.proposeConfChange({ type: "promoteLearner", nodeId: "s4" })).toThrow(
      expect.objectContaining({ code: "CONF_CHANGE_PENDING" }),
    );
    net.deliverAll();
    expect(l.status().conf).toEqual({ voters: ["s1", "s2", "s3"], learners: ["s4"] });
    expect(net.core("s4").lastIndex).toBe(l.lastIndex);
    // A learner never campaigns.
    for (let i = 0; i < 40; i++) net.core("s4").tick();
    expect(net.core("s4").currentRole).toBe("follower");
    l.proposeConfChange({ type: "promoteLearner", nodeId: "s4" });
    net.deliverAll();
    expect(l.status().conf.voters).toEqual(["s1", "s2", "s3", "s4"]);
    l.proposeConfChange({ type: "removeNode", nodeId: "s2" });
    net.deliverAll();
    expect(l.status().conf).toEqual({ voters: ["s1", "s3", "s4"], learners: [] });
    expect(() => l.proposeConfChange({ type: "removeNode", nodeId: "s1" })).toThrow(
      expect.objectContaining({ code: "CONF_CHANGE_INVALID" }),
    );
  });

  it("a new leader changes membership only after committing an entry of its term (§4.1 fix)", () => {
    const net = three();
    net.filter = (m) => !(m.from === "s2" && m.type === "app"); // s2's no-op goes nowhere
    net.elect("s2");
    const l = net.core("s2");
    expect(() => l.proposeConfChange({ type: "removeNode", nodeId: "s3" })).toThrow(
      expect.objectContaining({ code: "CONF_CHANGE_PENDING" }),
    );
    net.filter = () => true;
    net.tick("s2");
    net.deliverAll();
    expect(l.proposeConfChange({ type: "removeNode", nodeId: "s3" }).index).toBe(3);
  });

  it("messages and entries are plain structured-cloneable data (the transport uses v8.serialize)", () => {
    const net = three({ snapshotChunkBytesMax: 4 });
    net.propose("s1", enc.encode("x"));
    net.flush("s1");
    for (const m of net.queue) {
      const copy = structuredClone(m);
      expect(copy).toEqual(m);
      expect(Object.getPrototypeOf(m)).toBe(Object.prototype);
    }
  });
});
