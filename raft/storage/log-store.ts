// Owns the contract between a Raft node and its durable log: entries, hard state, compaction and a
// few small records, with an in-memory mirror for the core's synchronous reads. LevelLog is the one
// implementation; it runs on a KvStore (raft/storage/kv.ts): classic-level in production, a
// simulated disk (raft/storage/memory-kv.ts) in tests and the simulator. Every promise resolves
// once the change is durable, in call order.
import type { CompactionPoint, LogWrite, StoredEntry, StoredHardState } from "./level-log.ts";

export type { CompactionPoint, LogWrite, StoredEntry, StoredHardState };

export interface LogStore {
  readonly hardState: StoredHardState;
  readonly compactedTo: CompactionPoint;
  /** True when nothing was ever written: no entries, hard state, compaction or records. */
  readonly pristine: boolean;
  firstIndex(): number;
  lastIndex(): number;
  term(index: number): number | undefined;
  slice(lo: number, hi: number, bytesMax?: number): StoredEntry[];
  /** Appends (truncating a conflicting suffix) and/or sets the hard state; durable on resolve. */
  write(w: LogWrite): Promise<void>;
  compact(point: CompactionPoint): Promise<void>;
  reset(point: CompactionPoint): Promise<void>;
  meta(name: string): unknown;
  putMeta(name: string, value: unknown): Promise<void>;
  close(): Promise<void>;
}
