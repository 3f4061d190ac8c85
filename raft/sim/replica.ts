// Owns one simulated replica's state as the core simulator's driver keeps it: its core (absent
// while crashed), its disk (a MemoryStorage holding only what the driver finished persisting, so a
// crash keeps exactly that), its model state machine, and the driver-side bookkeeping the faults
// and clients need (pause, membership, incarnation, read numbering, held messages and answers).
import type { MemoryStorage, Message, RaftCore, RaftStorage, ReadState } from "../core/index.ts";
import { emptyKv, type KvState } from "./kv-model.ts";

/** A read answer the network holds back for a restarted reader (see SimNetwork.bounceReader). */
export interface HeldAnswer {
  m: Message;
  afterReads: number;
  done: boolean;
}

export class SimNode {
  core: RaftCore | undefined;
  sm: KvState = emptyKv();
  paused = false;
  removed = false;
  /** In the configuration as of some applied entry (a node started for addLearner is not, yet). */
  member = false;
  held: Message[] = [];
  lastCommit = 0;
  readsWaiting: ReadState[] = [];
  incarnation = 0;
  /** Reads this incarnation started (the driver numbers read contexts, as raft/node does). */
  readSeq = 0;
  /** Answers to an earlier incarnation's reads the network holds back (reader bounces). */
  answersHeld: HeldAnswer[] = [];
  constructor(
    readonly id: string,
    readonly disk: MemoryStorage,
  ) {}
}

/** A storage view that loses the persisted vote on load (the forgetVoteOnRestart bug). */
export function forgetfulView(disk: MemoryStorage): RaftStorage {
  return {
    initialState: () => {
      const s = disk.initialState();
      return { ...s, hardState: { ...s.hardState, vote: "" } };
    },
    entries: (lo, hi, bytesMax) => disk.entries(lo, hi, bytesMax),
    term: (i) => disk.term(i),
    firstIndex: () => disk.firstIndex(),
    lastIndex: () => disk.lastIndex(),
    snapshot: () => disk.snapshot(),
  };
}
