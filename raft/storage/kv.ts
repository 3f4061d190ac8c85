// Owns the key-value seam under the Raft log: the few LevelDB operations LevelLog needs, so the same
// log code runs on classic-level in production and on a simulated disk (memory-kv.ts) that can lose
// what was never synced. Keys are strings compared as LevelDB compares them (bytewise).
import { ClassicLevel } from "classic-level";

export interface KvRange {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
}

export type KvOp = { type: "put"; key: string; value: Uint8Array } | { type: "del"; key: string };

export interface KvStore {
  get(key: string): Promise<Uint8Array | undefined>;
  /** Every pair in the range, in key order. */
  entries(range: KvRange): Promise<[string, Uint8Array][]>;
  keys(range: KvRange): Promise<string[]>;
  /** Atomic: all of the batch or none of it survives a crash; `sync`: durable on resolve. */
  batch(ops: KvOp[], o: { sync: boolean }): Promise<void>;
  put(key: string, value: Uint8Array, o: { sync: boolean }): Promise<void>;
  /** Deletes the range (not synced). */
  clear(range: KvRange): Promise<void>;
  close(): Promise<void>;
}

export function inRange(key: string, r: KvRange): boolean {
  return (
    (r.gt === undefined || key > r.gt) &&
    (r.gte === undefined || key >= r.gte) &&
    (r.lt === undefined || key < r.lt) &&
    (r.lte === undefined || key <= r.lte)
  );
}

/** classic-level in `path` (created if missing). */
export async function openLevelKv(path: string): Promise<KvStore> {
  const db = new ClassicLevel<string, Uint8Array>(path, { keyEncoding: "utf8", valueEncoding: "view" });
  await db.open();
  return {
    get: (key) => db.get(key),
    async entries(range) {
      const out: [string, Uint8Array][] = [];
      for await (const kv of db.iterator(range)) out.push(kv);
      return out;
    },
    async keys(range) {
      const out: string[] = [];
      for await (const k of db.keys(range)) out.push(k);
      return out;
    },
    batch: (ops, o) => db.batch(ops, o),
    put: (key, value, o) => db.put(key, value, o),
    clear: (range) => db.clear(range),
    close: () => db.close(),
  };
}
