// Owns the state machine the real-node simulator replicates: registers written by clients, each
// command applied once per (client, seq) — a retry of an acknowledged write is answered with the
// index of its first application, and another command under a (client, seq) already used (a
// client that restarted and reused it) is refused, never answered with the first one's result. Every apply, snapshot and restore is reported to the checker,
// which compares them across replicas at equal indexes.
import type { StateMachine } from "../../node/node.ts";
import type { NodeChecker } from "./checker.ts";

export interface KvCommand {
  c: string;
  s: number;
  k: string;
  v: string;
}

interface KvState {
  kv: Record<string, { v: string; index: number }>;
  /** Per client, its last seq applied, where, and what the command wrote (k=v, to tell a retry). */
  done: Record<string, { s: number; index: number; w?: string }>;
}

/** What apply answers for a command older than its client's last (-1), or one reusing its seq (-2). */
export const staleSeq = -1;
export const reusedSeq = -2;

const enc = new TextEncoder();
const dec = new TextDecoder();

export const encodeCommand = (c: KvCommand): Uint8Array => enc.encode(JSON.stringify(c));

export class KvFsm implements StateMachine {
  private st: KvState = { kv: {}, done: {} };
  applied = 0;

  /** The view a lagging state machine (a mutant) reads from: refreshed every 7th apply only. */
  private lagging: KvState["kv"] | undefined;

  constructor(
    private readonly id: string,
    private readonly checker: NodeChecker,
    readsLag = false,
    /**
     * Record what each (client, seq) wrote, to refuse another command under it. Only runs whose
     * clients restart need it (otherwise each (client, seq) has one command), and leaving it out
     * keeps every other seed's state, and so its schedule, as it was. Off with restarts on: the
     * mutant that answers a reused seq with the first command's result.
     */
    private readonly tellsReuse = false,
  ) {
    if (readsLag) this.lagging = {};
  }

  apply(index: number, data: Uint8Array): unknown {
    const text = dec.decode(data);
    this.checker.onApply(this.id, index, text);
    this.applied = index;
    const c = JSON.parse(text) as KvCommand;
    const prev = this.st.done[c.c];
    const w = `${c.k}=${c.v}`;
    if (prev && prev.s >= c.s) {
      if (prev.s > c.s) return staleSeq;
      return !this.tellsReuse || prev.w === w ? prev.index : reusedSeq;
    }
    this.st.done[c.c] = this.tellsReuse ? { s: c.s, index, w } : { s: c.s, index };
    this.st.kv[c.k] = { v: c.v, index };
    return index;
  }

  snapshot(): Uint8Array {
    const text = JSON.stringify(this.st);
    this.checker.onState(this.id, this.applied, text, "snapshot");
    return enc.encode(text);
  }

  restore(data: Uint8Array, index: number): void {
    const text = data.byteLength === 0 ? JSON.stringify({ kv: {}, done: {} }) : dec.decode(data);
    if (index > 0) this.checker.onState(this.id, index, text, "restore");
    this.st = JSON.parse(text) as KvState;
    this.applied = index;
  }

  /** The highest seq of `client` applied here (0: none). */
  doneSeq(client: string): number {
    return this.st.done[client]?.s ?? 0;
  }

  /** The register's value and the index that wrote it. */
  read(k: string): { v: string; index: number } | undefined {
    if (this.lagging !== undefined) {
      if (this.applied % 7 === 0) this.lagging = { ...this.st.kv };
      return this.lagging[k];
    }
    return this.st.kv[k];
  }

  /** The whole state, for comparing replicas at the end. */
  text(): string {
    return JSON.stringify(this.st);
  }
}
