// Owns the read-only view of durable state the core starts from and reads its stable log through,
// plus MemoryStorage, an in-memory implementation (the simulator's "disk"). The core never writes
// storage: the driver persists what Ready asks for and only then updates the view, so the view
// holds exactly what survived. Method names follow raft/storage/level-log.ts (firstIndex, lastIndex,
// term) so the LevelDB log can be adapted with a thin wrapper.
import { assert } from "./assert.ts";
import type { ConfState, Entry, HardState, Snapshot } from "./types.ts";

export interface RaftStorage {
  /** Hard state and the configuration at the snapshot (the log's conf entries come on top). */
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries [lo, hi), at most `bytesMax` of data but at least one when any is in range. */
  entries(lo: number, hi: number, bytesMax: number): Entry[];
  /** Term at `index`; the compaction point's term at firstIndex()-1; undefined when unavailable. */
  term(index: number): number | undefined;
  firstIndex(): number;
  lastIndex(): number;
  /** The newest snapshot (meta.index 0 when none). */
  snapshot(): Snapshot;
}

export function entryBytes(e: Entry): number {
  return e.data.byteLength;
}

export class MemoryStorage implements RaftStorage {
  private hard: HardState = { term: 0, vote: "", commit: 0 };
  private snap: Snapshot;
  /** ents[0] is a dummy holding the compaction point (index, term); real entries follow. */
  private ents: Entry[];

  constructor(conf: ConfState = { voters: [], learners: [] }) {
    this.snap = {
      meta: { index: 0, term: 0, voters: [...conf.voters], learners: [...conf.learners] },
      data: new Uint8Array(0),
    };
    this.ents = [{ index: 0, term: 0, type: 0, data: new Uint8Array(0) }];
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return {
      hardState: { ...this.hard },
      confState: { voters: [...this.snap.meta.voters], learners: [...this.snap.meta.learners] },
    };
  }

  hardState(): HardState {
    return { ...this.hard };
  }

  setHardState(h: HardState): void {
    assert(h.term >= this.hard.term, () => `hard state term went back ${this.hard.term} → ${h.term}`);
    this.hard = { ...h };
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  term(index: number): number | undefined {
    const off = this.offset();
    if (index < off) return undefined;
    return this.ents[index - off]?.term;
  }

  entries(lo: number, hi: number, bytesMax: number): Entry[] {
    assert(lo > this.offset(), () => `entries(${lo}) compacted (first ${this.firstIndex()})`);
    assert(hi <= this.lastIndex() + 1, () => `entries(…, ${hi}) beyond last ${this.lastIndex()}`);
    const out: Entry[] = [];
    let bytes = 0;
    const off = this.offset();
    for (let i = lo; i < hi; i++) {
      const e = this.ents[i - off]!;
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Appends durably; a first entry at or below lastIndex replaces that suffix. */
  append(es: Entry[]): void {
    if (es.length === 0) return;
    const first = es[0]!.index;
    const off = this.offset();
    // Entries at or below the compaction point are already covered by the snapshot.
    const skip = Math.max(0, off + 1 - first);
    if (skip >= es.length) return;
    const from = first + skip;
    assert(from <= this.lastIndex() + 1, () => `append at ${from} leaves a gap after ${this.lastIndex()}`);
    this.ents.length = from - off;
    for (let k = skip; k < es.length; k++) {
      const e = es[k]!;
      assert(e.index === from + k - skip, "appended entries are not contiguous");
      this.ents.push(e);
    }
  }

  /** Installs a snapshot received from the leader: replaces the whole log. */
  applySnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) return; // stale
    this.snap = s;
    this.ents = [{ index: s.meta.index, term: s.meta.term, type: 0, data: new Uint8Array(0) }];
  }

  /** Records a snapshot the application took at `meta.index` (≤ applied) and compacts the log to it. */
  createSnapshot(s: Snapshot): void {
    if (s.meta.index <= this.snap.meta.index) return;
    assert(
      s.meta.index <= this.lastIndex(),
      () => `snapshot at ${s.meta.index} beyond last ${this.lastIndex()}`,
    );
    assert(this.term(s.meta.index) === s.meta.term, "snapshot term does not match the log");
    this.snap = s;
    this.compact(s.meta.index);
  }

  /** Drops entries up to `index` (must be covered by the snapshot). */
  compact(index: number): void {
    const off = this.offset();
    if (index <= off) return;
    assert(index <= this.snap.meta.index, "compacting past the snapshot");
    const kept = this.ents.slice(index - off);
    const t = this.term(index)!;
    this.ents = [{ index, term: t, type: 0, data: new Uint8Array(0) }, ...kept.slice(1)];
  }
}
