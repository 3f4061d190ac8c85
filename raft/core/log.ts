// Owns the node's view of its log: the stable part (storage, durable) plus the unstable part
// (entries or a snapshot this node accepted but the driver has not yet persisted), and the commit
// and applied indexes. Modelled on etcd raft's raftLog/unstable split so persistence can lag the
// core without the core ever reading storage for something that is not there.
import { assert } from "./assert.ts";
import { entryBytes, type RaftStorage } from "./storage.ts";
import type { Entry, Snapshot } from "./types.ts";

export class RaftLog {
  /** Unstable entries start at `offset` (= storage.lastIndex()+1 or the unstable snapshot's index+1). */
  private unstableEntries: Entry[] = [];
  private offset: number;
  private unstableSnap: Snapshot | undefined;
  committed: number;
  applied: number;

  constructor(private readonly storage: RaftStorage) {
    this.offset = storage.lastIndex() + 1;
    this.committed = storage.firstIndex() - 1;
    this.applied = storage.firstIndex() - 1;
  }

  firstIndex(): number {
    if (this.unstableSnap) return this.unstableSnap.meta.index + 1;
    return this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstableEntries.length > 0) return this.offset + this.unstableEntries.length - 1;
    if (this.unstableSnap) return this.unstableSnap.meta.index;
    return this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, "last entry has no term");
    return t;
  }

  /** Term at `i`, or undefined when compacted or beyond the end (index 0 has term 0). */
  term(i: number): number | undefined {
    if (i > this.lastIndex()) return undefined;
    if (i >= this.offset && this.unstableEntries.length > 0)
      return this.unstableEntries[i - this.offset]?.term;
    if (this.unstableSnap) {
      if (i === this.unstableSnap.meta.index) return this.unstableSnap.meta.term;
      if (i < this.unstableSnap.meta.index) return undefined;
    }
    if (i < this.storage.firstIndex() - 1) return undefined;
    return this.storage.term(i);
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  /** §5.4.1: candidate's log is at least as up-to-date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ours = this.lastTerm();
    return lastTerm > ours || (lastTerm === ours && lastIndex >= this.lastIndex());
  }

  /** Index of the first entry in `es` whose term disagrees with ours (or that we lack); 0 if none. */
  findConflict(es: Entry[]): number {
    for (const e of es) if (!this.matchTerm(e.index, e.term)) return e.index;
    return 0;
  }

  /**
   * Fast backtracking: the largest index ≤ `index` whose term is ≤ `term` — every entry above it
   * has a larger term, so it cannot match the other log. Unknown (compacted) terms stop the scan.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i > 0; i--) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
    }
    return { index: 0, term: 0 };
  }

  /**
   * AppendEntries receiver rules 2–5: if our log has (prevIndex, prevTerm), append the new entries
   * (truncating a conflicting suffix) and commit min(leaderCommit, last new index). Returns the last
   * new index, or undefined when the consistency check fails.
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    leaderCommit: number,
    es: Entry[],
  ): { lastNew: number; appended: Entry[] } | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + es.length;
    const ci = this.findConflict(es);
    let appended: Entry[] = [];
    if (ci !== 0) {
      assert(ci > this.committed, () => `conflict at ${ci} at or below committed ${this.committed}`);
      appended = es.slice(ci - (prevIndex + 1));
      this.append(appended);
    }
    this.commitTo(Math.min(leaderCommit, lastNew));
    return { lastNew, appended };
  }

  /** Appends to the unstable log; a first index ≤ lastIndex truncates the suffix from there. */
  append(es: Entry[]): number {
    if (es.length === 0) return this.lastIndex();
    const after = es[0]!.index - 1;
    assert(after >= this.committed, () => `append after ${after} would truncate committed ${this.committed}`);
    assert(after <= this.lastIndex(), () => `append after ${after} leaves a gap (last ${this.lastIndex()})`);
    if (after + 1 === this.offset + this.unstableEntries.length) {
      for (const e of es) this.unstableEntries.push(e);
    } else if (after + 1 <= this.offset) {
      // Replaces everything unstable (and a stable suffix: the driver's append truncates it).
      this.offset = after + 1;
      this.unstableEntries = es.slice();
    } else {
      this.unstableEntries = this.unstableEntries.slice(0, after + 1 - this.offset).concat(es);
    }
    return this.lastIndex();
  }

  /** Entries [lo, hi) within limits: at most `countMax` entries and `bytesMax` data (≥ 1 entry). */
  slice(lo: number, hi: number, countMax: number, bytesMax: number): Entry[] | undefined {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) return undefined; // compacted: needs a snapshot
    assert(hi <= this.lastIndex() + 1, () => `slice to ${hi} beyond last ${this.lastIndex()}`);
    hi = Math.min(hi, lo + countMax);
    let out: Entry[] = [];
    if (lo < this.offset) {
      out = this.storage.entries(lo, Math.min(hi, this.offset), bytesMax);
      if (out.length < Math.min(hi, this.offset) - lo) return out; // byte limit hit
    }
    if (hi > this.offset) {
      let bytes = 0;
      for (const e of out) bytes += entryBytes(e);
      for (let i = Math.max(lo, this.offset); i < hi; i++) {
        const e = this.unstableEntries[i - this.offset]!;
        bytes += entryBytes(e);
        if (out.length > 0 && bytes > bytesMax) break;
        out.push(e);
      }
    }
    return out;
  }

  commitTo(c: number): void {
    if (c <= this.committed) return; // never decreases
    assert(c <= this.lastIndex(), () => `commit ${c} beyond last index ${this.lastIndex()}`);
    this.committed = c;
  }

  /**
   * Leader commit rule (§5.4.2): `quorumIndex` is replicated on a majority; commit it only if its
   * entry is from the current term — older entries are then committed indirectly (Figure 8).
   */
  maybeCommit(quorumIndex: number, term: number, countOldTermEntries: boolean): boolean {
    if (quorumIndex <= this.committed) return false;
    if (!countOldTermEntries && this.term(quorumIndex) !== term) return false;
    this.commitTo(quorumIndex);
    return true;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    assert(
      i <= this.committed && i >= this.applied,
      () => `applied ${i} outside [${this.applied}, ${this.committed}]`,
    );
    this.applied = i;
  }

  /** Last index durable and still part of this log (entries from `offset` on are not durable yet). */
  stableLastIndex(): number {
    // A snapshot being installed is not durable until advance(), nor is anything above it (only a
    // follower installs one; the answer matters for a leader's self-acknowledgement).
    if (this.unstableSnap) return 0;
    return this.offset - 1;
  }

  hasUnstable(): boolean {
    return this.unstableEntries.length > 0;
  }

  unstable(): Entry[] {
    return this.unstableEntries;
  }

  unstableSnapshot(): Snapshot | undefined {
    return this.unstableSnap;
  }

  /** Committed entries not yet applied, from after the snapshot (the snapshot covers the rest). */
  nextCommitted(countMax: number, bytesMax: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    if (lo > this.committed) return [];
    return this.slice(lo, this.committed + 1, countMax, bytesMax) ?? [];
  }

  hasNextCommitted(): boolean {
    return Math.max(this.applied + 1, this.firstIndex()) <= this.committed;
  }

  /** The driver persisted entries through (i, t): drop them from unstable unless since replaced. */
  stableTo(i: number, t: number): void {
    if (this.unstableEntries.length === 0 || i < this.offset) return;
    const e = this.unstableEntries[i - this.offset];
    if (!e || e.term !== t) return;
    this.unstableEntries = this.unstableEntries.slice(i + 1 - this.offset);
    this.offset = i + 1;
  }

  stableSnapTo(i: number): void {
    if (this.unstableSnap && this.unstableSnap.meta.index === i) this.unstableSnap = undefined;
  }

  /** Follower installs a leader's snapshot: the log becomes "everything up to meta.index". */
  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.offset = s.meta.index + 1;
    this.unstableEntries = [];
    this.unstableSnap = s;
  }

  /** The snapshot to send a lagging follower: an unstable one if any, else storage's newest. */
  snapshot(): Snapshot {
    return this.unstableSnap ?? this.storage.snapshot();
  }
}
