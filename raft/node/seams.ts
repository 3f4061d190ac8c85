// Owns the seams RaftNode runs on besides the scheduler (scheduler.ts) and the log (LogStore,
// raft/storage/log-store.ts): the application's state machine, the snapshot store, the transport
// and the logger. Interfaces only, so an in-memory twin (raft/storage/memory-snapshots.ts, the
// simulator's network and state machine) can stand in for each without pulling in the real one.
import type { Message, Snapshot } from "../core/types.ts";

/** The application's deterministic state machine. */
export interface StateMachine {
  /** Applies a committed entry; the value is handed to the proposer. Same input, same state, on every replica. */
  apply(index: number, data: Uint8Array): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array, index: number): void;
}

/** Where snapshots live (PostgreSQL in production: raft/storage/pg-snapshots.ts). */
export interface SnapshotStore {
  save(s: Snapshot): Promise<void>;
  latest(): Promise<Snapshot | undefined>;
}

export interface Transport {
  send(to: string, message: Message): void;
  /** Sends our envelope to `to` (with queued messages, or alone); `ask`: it should answer with its own. */
  hello(to: string, ask: boolean): void;
}

export interface NodeLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}
