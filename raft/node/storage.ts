// Owns the core's read-only view of a replica's durable state: the LevelDB log and hard state plus
// the newest snapshot (kept in PostgreSQL, held here in memory). The node updates it only after a
// write is durable, so the view never shows the core something a crash could take back.
import type { RaftStorage } from "../core/storage.ts";
import { type ConfState, copyConf, type Entry, type HardState, type Snapshot } from "../core/types.ts";
import type { LogStore } from "../storage/log-store.ts";

export class NodeStorage implements RaftStorage {
  constructor(
    readonly log: LogStore,
    private snap: Snapshot,
  ) {}

  initialState(): { hardState: HardState; confState: ConfState } {
    return {
      hardState: { ...this.log.hardState },
      confState: copyConf(this.snap.meta),
    };
  }

  entries(lo: number, hi: number, bytesMax: number): Entry[] {
    return this.log.slice(lo, hi, bytesMax);
  }

  term(index: number): number | undefined {
    if (index === this.snap.meta.index) return this.snap.meta.term;
    return this.log.term(index);
  }

  firstIndex(): number {
    return this.log.firstIndex();
  }

  lastIndex(): number {
    return this.log.lastIndex();
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  setSnapshot(s: Snapshot): void {
    this.snap = s;
  }
}
