// Owns the core simulator's model state machine: a key-value map whose commands carry a client id
// and sequence number, so a retried request applies once (exactly-once is the application's job,
// §6.3, and this is how an application does it); its snapshot encoding; and the command codec,
// which caches decoded commands by buffer so that checking every replica's apply stays cheap.
import { Violation } from "./invariants.ts";

export interface KvState {
  applied: number;
  kv: Record<string, number>;
  /** Per client, the highest request sequence applied (dedupe of retried requests). */
  seen: Record<string, number>;
}

export interface Command {
  /** Client id ("probe": the liveness probe after healing). */
  c: string;
  /** The client's request sequence number. */
  s: number;
  k: string;
  v: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function emptyKv(): KvState {
  return { applied: 0, kv: {}, seen: {} };
}

export function encodeKv(s: KvState): Uint8Array {
  return enc.encode(JSON.stringify(s));
}

/** The state in a snapshot taken at `index` (empty data: the initial state). */
export function decodeKv(b: Uint8Array, index: number): KvState {
  if (b.byteLength === 0) return { ...emptyKv(), applied: index };
  const s = JSON.parse(dec.decode(b)) as KvState;
  if (s.applied !== index) throw new Violation(`snapshot data at ${s.applied} labelled ${index}`);
  return s;
}

/** Applies a client command, once per (client, sequence): a retry of an applied request is a no-op. */
export function applyCommand(sm: KvState, cmd: Command): void {
  if ((sm.seen[cmd.c] ?? 0) < cmd.s) {
    sm.seen[cmd.c] = cmd.s;
    sm.kv[cmd.k] = cmd.v;
  }
}

export class CommandCodec {
  private readonly cache = new WeakMap<Uint8Array, Command>();

  decode(b: Uint8Array): Command {
    let c = this.cache.get(b);
    if (!c) {
      c = JSON.parse(dec.decode(b)) as Command;
      this.cache.set(b, c);
    }
    return c;
  }

  encode(c: Command): Uint8Array {
    const b = enc.encode(JSON.stringify(c));
    this.cache.set(b, c);
    return b;
  }
}
