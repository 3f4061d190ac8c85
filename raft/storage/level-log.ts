// Owns the durable Raft log and hard state in LevelDB (classic-level). Everything the core asked to
// persist is written with sync: true before the caller may send messages that depend on it. Writes
// that arrive while a sync is in flight are merged into the next batch, so one fsync covers them
// all (group commit). An in-memory mirror serves the core's synchronous reads.
import { ClassicLevel } from "classic-level";

export interface StoredEntry {
  index: number;
  term: number;
  /** Opaque to storage: the core's entry type. */
  type: number;
  data: Uint8Array;
}

export interface StoredHardState {
  term: number;
  vote: string;
  commit: number;
}

/** Where the log starts after compaction: the last index and term a snapshot covers. */
export interface CompactionPoint {
  index: number;
  term: number;
}

export interface LogWrite {
  /** Entries to append; the first may overwrite a conflicting suffix, which is then deleted. */
  entries?: StoredEntry[];
  hardState?: StoredHardState;
}

const entryKey = (i: number) => `e${i.toString(16).padStart(16, "0")}`;
const HARD_STATE_KEY = "h";
const COMPACTION_KEY = "c";
/** Bound on merged writes per fsync: keeps one batch's memory and latency in check. */
export const groupCommitEntriesMax = 4_096;

function encodeEntry(e: StoredEntry): Uint8Array {
  const out = new Uint8Array(13 + e.data.length);
  const view = new DataView(out.buffer);
  view.setFloat64(0, e.term);
  view.setUint8(8, e.type);
  view.setUint32(9, e.data.length);
  out.set(e.data, 13);
  return out;
}

function decodeEntry(index: number, b: Uint8Array): StoredEntry {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const len = view.getUint32(9);
  if (13 + len !== b.byteLength) throw new Error(`corrupt log entry at ${index}`);
  return { index, term: view.getFloat64(0), type: view.getUint8(8), data: b.slice(13) };
}

interface Pending {
  write: LogWrite;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class LevelLog {
  private entries: StoredEntry[] = [];
  private compaction: CompactionPoint = { index: 0, term: 0 };
  private hard: StoredHardState = { term: 0, vote: "", commit: 0 };
  /** The hard state as last written to disk, to tell a commit-only change from a term or vote change. */
  private diskHard: StoredHardState = { term: 0, vote: "", commit: 0 };
  /** Term and vote of the newest hard state handed to a batch (queued or on disk). */
  private queuedHard: StoredHardState = { term: 0, vote: "", commit: 0 };
  /** Highest entry index whose key may exist on disk (above lastIndex only after a truncation). */
  private diskLast = 0;
  /** Last index of the log as durable on disk (what a restart would find). */
  private durableLast = 0;
  private queue: Pending[] = [];
  private flushing = false;
  /** fsyncs issued, for tests and metrics: fewer than writes means group commit worked. */
  syncs = 0;

  private constructor(private readonly db: ClassicLevel<string, Uint8Array>) {}

  static async open(path: string): Promise<LevelLog> {
    const db = new ClassicLevel<string, Uint8Array>(path, { keyEncoding: "utf8", valueEncoding: "view" });
    await db.open();
    const log = new LevelLog(db);
    const hard = await db.get(HARD_STATE_KEY);
    if (hard) log.hard = JSON.parse(new TextDecoder().decode(hard)) as StoredHardState;
    log.diskHard = { ...log.hard };
    log.queuedHard = { ...log.hard };
    const comp = await db.get(COMPACTION_KEY);
    if (comp) log.compaction = JSON.parse(new TextDecoder().decode(comp)) as CompactionPoint;
    let expect = log.compaction.index + 1;
    for await (const [key, value] of db.iterator({ gte: entryKey(0), lt: "f" })) {
      const index = Number.parseInt(key.slice(1), 16);
      if (index <= log.compaction.index) continue; // compacted, deletion not yet reached
      if (index !== expect) throw new Error(`log gap: expected index ${expect}, found ${index}`);
      log.entries.push(decodeEntry(index, value));
      expect++;
    }
    log.diskLast = log.lastIndex();
    log.durableLast = log.lastIndex();
    return log;
  }

  get hardState(): StoredHardState {
    return this.hard;
  }

  get compactedTo(): CompactionPoint {
    return this.compaction;
  }

  firstIndex(): number {
    return this.compaction.index + 1;
  }

  lastIndex(): number {
    return this.compaction.index + this.entries.length;
  }

  /** Term at `index`; undefined when compacted away (except the compaction point) or beyond the end. */
  term(index: number): number | undefined {
    if (index === this.compaction.index) return this.compaction.term;
    return this.entries[index - this.compaction.index - 1]?.term;
  }

  /** Entries [lo, hi), at most `bytesMax` of data (at least one entry when any is in range). */
  slice(lo: number, hi: number, bytesMax = Number.POSITIVE_INFINITY): StoredEntry[] {
    if (lo < this.firstIndex() || hi > this.lastIndex() + 1 || lo > hi) {
      throw new Error(`slice [${lo}, ${hi}) outside log [${this.firstIndex()}, ${this.lastIndex() + 1})`);
    }
    const out: StoredEntry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.entries[i - this.compaction.index - 1]!;
      bytes += e.data.length;
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Persists entries and/or hard state durably (fsync). Resolves once on disk. The mirror is
   * updated at once, so reads see the write before it is durable — which is what the core expects
   * of its unstable log; callers must still wait for the promise before sending dependent messages.
   */
  write(w: LogWrite): Promise<void> {
    this.applyToMirror(w);
    const hard = w.hardState;
    if (!w.entries?.length) {
      // A commit index alone is not written at all: it is volatile state in Raft (learned again
      // from the leader after a restart), and writing it cost a LevelDB batch per commit round.
      // It reaches the disk with the next entries or term/vote change, which carry the mirror's.
      if (!hard || (hard.term === this.queuedHard.term && hard.vote === this.queuedHard.vote)) {
        return Promise.resolve();
      }
    }
    if (hard) this.queuedHard = { ...hard };
    return new Promise((resolve, reject) => {
      this.queue.push({ write: w, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private applyToMirror(w: LogWrite) {
    if (w.hardState) this.hard = { ...w.hardState };
    const es = w.entries ?? [];
    if (es.length === 0) return;
    const first = es[0]!.index;
    if (first <= this.compaction.index)
      throw new Error(`invariant: append at ${first} below compaction ${this.compaction.index}`);
    if (first > this.lastIndex() + 1)
      throw new Error(`invariant: append at ${first} leaves a gap after ${this.lastIndex()}`);
    for (let k = 1; k < es.length; k++) {
      if (es[k]!.index !== first + k) throw new Error("invariant: appended entries are not contiguous");
    }
    this.entries.length = first - this.compaction.index - 1; // truncate a conflicting suffix
    this.entries.push(...es);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      const batch: Pending[] = [];
      let count = 0;
      while (this.queue.length > 0 && (batch.length === 0 || count < groupCommitEntriesMax)) {
        const p = this.queue.shift()!;
        count += p.write.entries?.length ?? 0;
        batch.push(p);
      }
      const ops: ({ type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string })[] = [];
      let hard: StoredHardState | undefined;
      let lowestWritten: number | undefined;
      let highestWritten = 0;
      const last = this.lastIndex();
      for (const { write } of batch) {
        if (write.hardState) hard = write.hardState;
        for (const e of write.entries ?? []) {
          lowestWritten = Math.min(lowestWritten ?? e.index, e.index);
          highestWritten = Math.max(highestWritten, e.index);
          // Only what the mirror still holds: an entry a later write replaced or truncated is
          // either written by that write's batch or must not reach the disk at all.
          if (this.entries[e.index - this.compaction.index - 1] === e) {
            ops.push({ type: "put", key: entryKey(e.index), value: encodeEntry(e) });
          }
        }
      }
      // A conflicting suffix longer than what replaced it must not survive a restart.
      if (lowestWritten !== undefined) {
        for (let i = last + 1; i <= this.diskLast; i++) ops.push({ type: "del", key: entryKey(i) });
      }
      if (hard || lowestWritten !== undefined) {
        // Commit-only writes were skipped: carry the newest commit index along, but never past the
        // entries durable once this batch lands (a restart must not find commit > last index).
        const base = hard ?? this.diskHard;
        const durableAfter = lowestWritten !== undefined ? highestWritten : this.durableLast;
        hard = {
          term: base.term,
          vote: base.vote,
          commit: Math.max(0, Math.min(Math.max(this.hard.commit, base.commit), durableAfter)),
        };
      }
      if (hard)
        ops.push({ type: "put", key: HARD_STATE_KEY, value: new TextEncoder().encode(JSON.stringify(hard)) });
      // Entries, term and vote are promises to peers and must be on disk before any message leaves.
      // A commit index alone need not be: after a crash it is learned again from the leader.
      const sync =
        lowestWritten !== undefined ||
        (hard !== undefined && (hard.term !== this.diskHard.term || hard.vote !== this.diskHard.vote));
      try {
        await this.db.batch(ops, { sync });
        if (sync) this.syncs++;
        if (hard) this.diskHard = { ...hard };
        if (lowestWritten !== undefined) {
          this.diskLast = Math.max(Math.min(this.diskLast, last), highestWritten);
          this.durableLast = highestWritten;
        }
        for (const p of batch) p.resolve();
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.flushing = false;
  }

  /** Drops entries up to `point.index` once a snapshot covering them is durable elsewhere. */
  async compact(point: CompactionPoint): Promise<void> {
    if (point.index <= this.compaction.index) return;
    if (point.index > this.lastIndex()) {
      // A snapshot from the leader beyond our log: the whole log is replaced by it.
      this.entries = [];
    } else {
      if (this.term(point.index) !== point.term)
        throw new Error(`invariant: compaction term mismatch at ${point.index}`);
      this.entries = this.entries.slice(point.index - this.compaction.index);
    }
    const from = this.compaction.index;
    this.compaction = { ...point };
    this.durableLast = Math.max(this.durableLast, point.index);
    await this.db.put(COMPACTION_KEY, new TextEncoder().encode(JSON.stringify(point)), { sync: true });
    // Deleting old keys may lag behind a crash; open() skips anything at or below the point.
    await this.db.clear({ gte: entryKey(from + 1), lte: entryKey(point.index) });
    if (this.entries.length === 0) await this.db.clear({ gt: entryKey(point.index), lt: "f" });
  }

  /**
   * Replaces the whole log by a snapshot's compaction point (a follower installing the leader's
   * snapshot): every entry goes, whatever its term. Waits for writes in flight so none lands after.
   */
  async reset(point: CompactionPoint): Promise<void> {
    while (this.flushing || this.queue.length > 0) await new Promise((r) => setImmediate(r));
    // One atomic batch: a crash leaves either the old log or the new point, never old entries
    // above the new point (they could conflict with the snapshot).
    const ops: ({ type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string })[] = [];
    for await (const key of this.db.keys({ gte: entryKey(0), lt: "f" })) ops.push({ type: "del", key });
    ops.push({ type: "put", key: COMPACTION_KEY, value: new TextEncoder().encode(JSON.stringify(point)) });
    await this.db.batch(ops, { sync: true });
    this.syncs++;
    this.entries = [];
    this.compaction = { ...point };
    this.diskLast = 0;
    this.durableLast = point.index;
  }

  async close(): Promise<void> {
    while (this.flushing || this.queue.length > 0) await new Promise((r) => setImmediate(r));
    await this.db.close();
  }
}
