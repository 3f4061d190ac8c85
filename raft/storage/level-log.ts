// Owns the durable Raft log and hard state in LevelDB (classic-level). Everything the core asked to
// persist is written with sync: true before the caller may send messages that depend on it. Writes
// that arrive while a sync is in flight are merged into the next batch, so one fsync covers them
// all (group commit). An in-memory mirror serves the core's synchronous reads.
import { assert } from "../core/assert.ts";
import { type KvOp, type KvStore, openLevelKv } from "./kv.ts";
import type { LogStore } from "./log-store.ts";

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
/** Small records the node keeps beside the log (its identity, its peers' incarnations). */
const META_PREFIX = "m:";
/** Bound on merged writes per fsync: keeps one batch's memory and latency in check. */
export const groupCommitEntriesMax = 4_096;

/** Switches that break the log on purpose, so the real-node simulator can prove it catches them. */
export interface LevelLogBugs {
  /**
   * Write the hard state in a batch of its own ahead of the entries (not atomically with them): a
   * crash between the two leaves a commit index beyond the durable log.
   */
  commitBeyondDurable?: boolean;
}

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

type Job =
  | { kind: "write"; write: LogWrite; resolve: () => void; reject: (err: unknown) => void }
  | { kind: "meta"; name: string; value: unknown; resolve: () => void; reject: (err: unknown) => void }
  | {
      kind: "compact" | "reset";
      point: CompactionPoint;
      /** compact: the point lay beyond the log, so every entry on disk is stale. */
      beyond: boolean;
      resolve: () => void;
      reject: (err: unknown) => void;
    };

type Op = KvOp;

/**
 * One queue for every change (writes, compactions, resets): each takes effect in the mirror when it
 * is called and on disk in the order it was called, so the disk is always a prefix of the calls and
 * a compaction or reset can never land under, over or between writes issued around it.
 */
export class LevelLog implements LogStore {
  private entries: StoredEntry[] = [];
  private compaction: CompactionPoint = { index: 0, term: 0 };
  private hard: StoredHardState = { term: 0, vote: "", commit: 0 };
  /** The hard state as last written to disk, to tell a commit-only change from a term or vote change. */
  private diskHard: StoredHardState = { term: 0, vote: "", commit: 0 };
  /** Term and vote of the newest hard state handed to a batch (queued or on disk). */
  private queuedHard: StoredHardState = { term: 0, vote: "", commit: 0 };
  /** Last index of the log as durable on disk (what a restart would find), compaction point included. */
  private durableLast = 0;
  /** Highest entry key that may exist on disk (above durableLast only within a batch being built). */
  private diskKeyTop = 0;
  private queue: Job[] = [];
  private flushing = false;
  /** close() waiting for the queue to empty. */
  private readonly drained: (() => void)[] = [];
  private readonly metas = new Map<string, unknown>();
  /** fsyncs issued, for tests and metrics: fewer than writes means group commit worked. */
  syncs = 0;

  private constructor(
    private readonly db: KvStore,
    private readonly bugs: LevelLogBugs = {},
  ) {}

  /** The log in a LevelDB directory. */
  static async open(path: string): Promise<LevelLog> {
    return LevelLog.openOn(await openLevelKv(path));
  }

  /** The log on any key-value store (a simulated disk in tests and the simulator). */
  static async openOn(db: KvStore, bugs: LevelLogBugs = {}): Promise<LevelLog> {
    const log = new LevelLog(db, bugs);
    const hard = await db.get(HARD_STATE_KEY);
    if (hard) log.hard = JSON.parse(new TextDecoder().decode(hard)) as StoredHardState;
    log.diskHard = { ...log.hard };
    log.queuedHard = { ...log.hard };
    const comp = await db.get(COMPACTION_KEY);
    if (comp) log.compaction = JSON.parse(new TextDecoder().decode(comp)) as CompactionPoint;
    for (const [key, value] of await db.entries({ gte: META_PREFIX, lt: "m;" })) {
      log.metas.set(key.slice(META_PREFIX.length), JSON.parse(new TextDecoder().decode(value)));
    }
    let expect = log.compaction.index + 1;
    for (const [key, value] of await db.entries({ gte: entryKey(0), lt: "f" })) {
      const index = Number.parseInt(key.slice(1), 16);
      if (index <= log.compaction.index) continue; // compacted, deletion not yet reached
      if (index !== expect) throw new Error(`log gap: expected index ${expect}, found ${index}`);
      log.entries.push(decodeEntry(index, value));
      expect++;
    }
    log.diskKeyTop = log.lastIndex();
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
    return new Promise((resolve, reject) => this.push({ kind: "write", write: w, resolve, reject }));
  }

  private push(job: Job): void {
    this.queue.push(job);
    if (!this.flushing) void this.flush();
  }

  private applyToMirror(w: LogWrite) {
    if (w.hardState) this.hard = { ...w.hardState };
    const es = w.entries ?? [];
    if (es.length === 0) return;
    const first = es[0]!.index;
    assert(
      first > this.compaction.index,
      () => `invariant: append at ${first} below compaction ${this.compaction.index}`,
    );
    assert(
      first <= this.lastIndex() + 1,
      () => `invariant: append at ${first} leaves a gap after ${this.lastIndex()}`,
    );
    for (let k = 1; k < es.length; k++) {
      assert(es[k]!.index === first + k, "invariant: appended entries are not contiguous");
    }
    this.entries.length = first - this.compaction.index - 1; // truncate a conflicting suffix
    this.entries.push(...es);
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.kind !== "write") {
        this.queue.shift();
        try {
          if (head.kind === "compact") await this.compactOnDisk(head.point, head.beyond);
          else if (head.kind === "meta") {
            const value = new TextEncoder().encode(JSON.stringify(head.value));
            await this.db.put(META_PREFIX + head.name, value, { sync: true });
            this.syncs++;
          } else await this.resetOnDisk(head.point);
          head.resolve();
        } catch (err) {
          head.reject(err);
        }
        continue;
      }
      // Consecutive writes share one batch and one fsync (group commit), up to the next barrier.
      const batch: Extract<Job, { kind: "write" }>[] = [];
      let count = 0;
      while (this.queue.length > 0 && (batch.length === 0 || count < groupCommitEntriesMax)) {
        const j = this.queue[0]!;
        if (j.kind !== "write") break;
        this.queue.shift();
        count += j.write.entries?.length ?? 0;
        batch.push(j);
      }
      await this.writeBatch(batch);
    }
    this.flushing = false;
    for (const r of this.drained.splice(0)) r();
  }

  /**
   * Replays the batch's writes on the disk's own state, in call order (not from the mirror, which
   * may already be ahead by later compactions or resets): later puts in one LevelDB batch win over
   * earlier ones, and a truncated suffix is deleted as the write that truncated it is replayed.
   */
  private async writeBatch(batch: Extract<Job, { kind: "write" }>[]): Promise<void> {
    const ops: Op[] = [];
    let hard: StoredHardState | undefined;
    let last = this.durableLast;
    let keyTop = this.diskKeyTop;
    let wroteEntries = false;
    for (const { write } of batch) {
      if (write.hardState) hard = write.hardState;
      const es = write.entries ?? [];
      if (es.length === 0) continue;
      wroteEntries = true;
      for (const e of es) ops.push({ type: "put", key: entryKey(e.index), value: encodeEntry(e) });
      const top = es[es.length - 1]!.index;
      for (let i = top + 1; i <= keyTop; i++) ops.push({ type: "del", key: entryKey(i) });
      last = top;
      keyTop = top;
    }
    if (hard || wroteEntries) {
      // Commit-only writes were skipped: carry the newest commit index along, but never past the
      // entries durable once this batch lands (a restart must not find commit > last index).
      const base = hard ?? this.diskHard;
      hard = {
        term: base.term,
        vote: base.vote,
        commit: Math.max(0, Math.min(Math.max(this.hard.commit, base.commit), last)),
      };
      ops.push({ type: "put", key: HARD_STATE_KEY, value: new TextEncoder().encode(JSON.stringify(hard)) });
    }
    // Entries, term and vote are promises to peers and must be on disk before any message leaves.
    // A commit index alone need not be: after a crash it is learned again from the leader.
    const sync =
      wroteEntries ||
      (hard !== undefined && (hard.term !== this.diskHard.term || hard.vote !== this.diskHard.vote));
    try {
      if (this.bugs.commitBeyondDurable && hard) {
        // The planted bug: the hard state lands on its own, ahead of the entries it counts.
        const hardOp = ops.pop()!;
        await this.db.batch([hardOp], { sync: false });
      }
      await this.db.batch(ops, { sync });
      if (sync) this.syncs++;
      if (hard) this.diskHard = { ...hard };
      this.durableLast = last;
      this.diskKeyTop = keyTop;
      for (const p of batch) p.resolve();
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  private async compactOnDisk(point: CompactionPoint, beyond: boolean): Promise<void> {
    await this.db.put(COMPACTION_KEY, new TextEncoder().encode(JSON.stringify(point)), { sync: true });
    this.syncs++;
    // Deleting old keys may lag behind a crash; open() skips anything at or below the point.
    await this.db.clear({ gte: entryKey(0), lte: entryKey(point.index) });
    if (beyond) {
      // Every entry on disk now is older than the point (later writes are still queued): stale.
      await this.db.clear({ gt: entryKey(point.index), lt: "f" });
      this.diskKeyTop = point.index;
    }
    this.durableLast = Math.max(this.durableLast, point.index);
    this.diskKeyTop = Math.max(this.diskKeyTop, point.index);
  }

  private async resetOnDisk(point: CompactionPoint): Promise<void> {
    // One atomic batch: a crash leaves either the old log or the new point, never old entries
    // above the new point (they could conflict with the snapshot).
    const ops: Op[] = [];
    for (const key of await this.db.keys({ gte: entryKey(0), lt: "f" })) ops.push({ type: "del", key });
    ops.push({ type: "put", key: COMPACTION_KEY, value: new TextEncoder().encode(JSON.stringify(point)) });
    await this.db.batch(ops, { sync: true });
    this.syncs++;
    this.durableLast = point.index;
    this.diskKeyTop = point.index;
  }

  /** A record stored with putMeta (as of the last call), or undefined. */
  meta(name: string): unknown {
    return this.metas.get(name);
  }

  /** Stores a small JSON record durably (fsync), in order with every other change. */
  putMeta(name: string, value: unknown): Promise<void> {
    this.metas.set(name, value);
    return new Promise((resolve, reject) => this.push({ kind: "meta", name, value, resolve, reject }));
  }

  /** True when nothing was ever written here: no entries, hard state, compaction or records. */
  get pristine(): boolean {
    return (
      this.lastIndex() === 0 &&
      this.compaction.index === 0 &&
      this.hard.term === 0 &&
      this.hard.vote === "" &&
      this.metas.size === 0
    );
  }

  /** Drops entries up to `point.index` once a snapshot covering them is durable elsewhere. */
  compact(point: CompactionPoint): Promise<void> {
    if (point.index <= this.compaction.index) return Promise.resolve();
    const beyond = point.index > this.lastIndex();
    if (beyond) {
      // A snapshot from the leader beyond our log: the whole log is replaced by it.
      this.entries = [];
    } else {
      try {
        assert(
          this.term(point.index) === point.term,
          () => `invariant: compaction term mismatch at ${point.index}`,
        );
      } catch (err) {
        return Promise.reject(err); // on the promise, as every other compaction failure is
      }
      this.entries = this.entries.slice(point.index - this.compaction.index);
    }
    this.compaction = { ...point };
    return new Promise((resolve, reject) => this.push({ kind: "compact", point, beyond, resolve, reject }));
  }

  /**
   * Replaces the whole log by a snapshot's compaction point (a follower installing the leader's
   * snapshot): every entry goes, whatever its term. Queued behind every change called before it.
   */
  reset(point: CompactionPoint): Promise<void> {
    this.entries = [];
    this.compaction = { ...point };
    return new Promise((resolve, reject) =>
      this.push({ kind: "reset", point: { ...point }, beyond: true, resolve, reject }),
    );
  }

  async close(): Promise<void> {
    if (this.flushing || this.queue.length > 0) await new Promise<void>((r) => this.drained.push(r));
    await this.db.close();
  }
}
