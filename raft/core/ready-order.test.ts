// The core, not the driver, decides what may leave before a Ready is durable (etcd's
// msgsAfterAppend): requests in `messages`, answers and anything of a term or vote change in
// `messagesAfterPersist`; and the leader counts its own entries toward a commit only once advance()
// says they are durable — with one voter as with three.
import { describe, expect, it } from "vitest";
import { RaftCore } from "./raft.ts";
import { MemoryStorage } from "./storage.ts";
import { seededRandom } from "./testing.ts";
import { emptyMessage, type Ready } from "./types.ts";

const enc = new TextEncoder();

function mk(id: string, voters: string[]) {
  const disk = new MemoryStorage({ voters, learners: [] });
  const core = new RaftCore({
    id,
    storage: disk,
    electionTicks: 10,
    heartbeatTicks: 1,
    random: seededRandom(7),
    preVote: false,
  });
  const persist = (rd: Ready) => {
    if (rd.snapshot) disk.applySnapshot(rd.snapshot);
    disk.append(rd.entries);
    if (rd.hardState) disk.setHardState(rd.hardState);
  };
  const drain = () => {
    while (core.hasReady()) {
      const rd = core.ready();
      persist(rd);
      core.advance(rd);
    }
  };
  return { core, persist, drain };
}

const texts = (rd: Ready) => rd.committedEntries.map((e) => new TextDecoder().decode(e.data));

describe("what may leave before a Ready is durable", () => {
  it("one voter: its own entry commits only after advance(), never in the Ready that appends it", () => {
    const { core, persist, drain } = mk("a", ["a"]);
    core.campaign();
    drain();
    expect(core.currentRole).toBe("leader");
    core.propose(enc.encode("x"));
    const rd = core.ready();
    expect(rd.entries.map((e) => new TextDecoder().decode(e.data))).toEqual(["x"]);
    expect(texts(rd)).toEqual([]);
    expect(rd.hardState?.commit ?? 0).toBeLessThan(rd.entries[0]!.index);
    persist(rd);
    core.advance(rd);
    expect(core.hasReady()).toBe(true);
    expect(texts(core.ready())).toEqual(["x"]);
  });

  it("three voters: a follower's answer alone does not commit the leader's entry before its write", () => {
    const { core, persist, drain } = mk("s1", ["s1", "s2", "s3"]);
    core.campaign();
    const votes = core.ready();
    // A candidate's vote requests speak for a term and vote not yet on disk.
    expect(votes.messages).toEqual([]);
    expect(votes.messagesAfterPersist.map((m) => m.type)).toEqual(["vote", "vote"]);
    persist(votes);
    core.advance(votes);
    core.step({ ...emptyMessage("voteResp", "s2", "s1", core.currentTerm), reject: false });
    expect(core.currentRole).toBe("leader");
    const rd = core.ready();
    const noop = rd.entries.at(-1)!;
    // The leader's appends may leave at once...
    expect(
      rd.messages
        .filter((m) => m.type === "app")
        .map((m) => m.to)
        .sort(),
    ).toEqual(["s2", "s3"]);
    expect(rd.messagesAfterPersist).toEqual([]);
    // ...and s2 answers before the leader's own write is done: one of three is no majority.
    core.step({ ...emptyMessage("appResp", "s2", "s1", core.currentTerm), index: noop.index });
    expect(core.status().commit).toBeLessThan(noop.index);
    persist(rd);
    core.advance(rd);
    expect(core.status().commit).toBe(noop.index);
    drain();
  });

  it("a follower's answers wait for its write; so does everything in a Ready that changes its term", () => {
    const { core } = mk("s2", ["s1", "s2", "s3"]);
    core.step({
      ...emptyMessage("app", "s1", "s2", 1),
      index: 0,
      logTerm: 0,
      entries: [{ index: 1, term: 1, type: 0, data: enc.encode("e") }],
    });
    const rd = core.ready();
    expect(rd.entries).toHaveLength(1);
    expect(rd.messages).toEqual([]);
    expect(rd.messagesAfterPersist.map((m) => m.type)).toEqual(["appResp"]);
  });
});
