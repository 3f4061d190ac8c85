// Owns the shape check of a Raft message that arrives from a peer: every field of every message
// type, snapshot fields included, before anything reaches the core. A peer's bytes are input, not
// trusted state: a message that fails here is dropped (Raft tolerates loss) and never stepped, so a
// malformed one cannot fire one of the core's assertions and stop the replica.
import type { Message, MessageType } from "../core/types.ts";
import { snapshotBytesMax } from "../storage/limits.ts";

/** Longest node id accepted (ids are short names like "inv-1"). */
export const nodeIdCharsMax = 256;
/** Longest read context accepted (a node id, an incarnation and a sequence number, or "transfer"). */
export const contextCharsMax = 1_024;
/** Entries in one append accepted from a peer (the core sends at most entriesPerMessageMax, 256 by default). */
export const entriesPerMessageMax = 100_000;
/** Members in a configuration carried by a snapshot or a conf-change entry. */
export const membersMax = 64;

const messageTypes: ReadonlySet<string> = new Set<MessageType>([
  "vote",
  "voteResp",
  "preVote",
  "preVoteResp",
  "app",
  "appResp",
  "heartbeat",
  "heartbeatResp",
  "snap",
  "snapResp",
  "timeoutNow",
  "readIndex",
  "readIndexResp",
]);

/** Entry types the core knows: Normal, ConfChange, Noop. */
const entryTypes: ReadonlySet<number> = new Set([0, 1, 2]);

const isIndex = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isId = (v: unknown): v is string => typeof v === "string" && v.length > 0 && v.length <= nodeIdCharsMax;

/** Longest member address accepted (host:port). */
export const addressCharsMax = 255;

function membersProblem(voters: unknown, learners: unknown, addresses?: unknown): string | undefined {
  if (!Array.isArray(voters) || voters.length > membersMax || !voters.every(isId)) return "voters";
  if (!Array.isArray(learners) || learners.length > membersMax || !learners.every(isId)) return "learners";
  if (addresses !== undefined) {
    if (!addresses || typeof addresses !== "object" || Array.isArray(addresses)) return "addresses";
    const es = Object.entries(addresses);
    const ok = (a: unknown) => typeof a === "string" && a.length > 0 && a.length <= addressCharsMax;
    if (es.length > 2 * membersMax || !es.every(([id, a]) => isId(id) && ok(a))) return "addresses";
  }
  return undefined;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

function confChangeProblem(data: Uint8Array): string | undefined {
  let c: unknown;
  try {
    c = JSON.parse(decoder.decode(data));
  } catch {
    return "entries.data";
  }
  if (!c || typeof c !== "object") return "entries.data";
  const { voters, learners, addresses } = c as Record<string, unknown>;
  return membersProblem(voters, learners, addresses) ? "entries.data" : undefined;
}

function entriesProblem(x: Record<string, unknown>): string | undefined {
  const es = x.entries;
  if (!Array.isArray(es) || es.length > entriesPerMessageMax) return "entries";
  if (es.length > 0 && x.type !== "app") return "entries";
  let prevTerm = 0;
  for (let k = 0; k < es.length; k++) {
    const e = es[k] as Record<string, unknown> | null;
    if (!e || typeof e !== "object") return "entries";
    // An append carries the entries right after `index`, contiguous, terms never decreasing and
    // never beyond the message's own term (a leader appends only entries of its term or older).
    if (!isIndex(e.index) || e.index !== (x.index as number) + 1 + k) return "entries.index";
    if (!isIndex(e.term) || e.term < 1 || e.term < prevTerm || e.term > (x.term as number))
      return "entries.term";
    if (!Number.isInteger(e.type) || !entryTypes.has(e.type as number)) return "entries.type";
    if (!(e.data instanceof Uint8Array)) return "entries.data";
    if (e.type === 1) {
      const p = confChangeProblem(e.data);
      if (p) return p;
    }
    prevTerm = e.term;
  }
  return undefined;
}

function snapshotProblem(x: Record<string, unknown>): string | undefined {
  const isSnap = x.type === "snap";
  if (x.snapshot !== undefined || isSnap) {
    const s = x.snapshot as Record<string, unknown> | null | undefined;
    if (!s || typeof s !== "object") return "snapshot";
    if (!isIndex(s.index) || s.index < 1) return "snapshot.index";
    if (!isIndex(s.term) || s.term < 1 || s.term > (x.term as number)) return "snapshot.term";
    const p = membersProblem(s.voters, s.learners, s.addresses);
    if (p) return `snapshot.${p}`;
    if (s.voters === undefined || (s.voters as unknown[]).length === 0) return "snapshot.voters";
  }
  if (x.offset !== undefined || isSnap) {
    if (!isIndex(x.offset) || x.offset > snapshotBytesMax) return "offset";
  }
  if (x.total !== undefined || isSnap) {
    if (!isIndex(x.total) || x.total < 1 || x.total > snapshotBytesMax) return "total";
  }
  if (x.data !== undefined || isSnap) {
    if (!(x.data instanceof Uint8Array)) return "data";
  }
  if (isSnap) {
    const offset = x.offset as number;
    const data = x.data as Uint8Array;
    if (offset >= (x.total as number)) return "offset";
    if (data.byteLength === 0 || offset + data.byteLength > (x.total as number)) return "data";
  }
  return undefined;
}

/**
 * The first field of `m` that is not what a well-behaved peer sends (a dotted name such as
 * "snapshot.voters"), or undefined when every field checks out.
 */
export function messageProblem(m: unknown): string | undefined {
  if (!m || typeof m !== "object" || Array.isArray(m)) return "message";
  const x = m as Record<string, unknown>;
  if (typeof x.type !== "string" || !messageTypes.has(x.type)) return "type";
  if (!isId(x.from)) return "from";
  if (!isId(x.to)) return "to";
  if (x.from === x.to) return "from";
  if (!isIndex(x.term)) return "term";
  if (!isIndex(x.logTerm)) return "logTerm";
  if (!isIndex(x.index)) return "index";
  if (!isIndex(x.commit)) return "commit";
  if (typeof x.reject !== "boolean") return "reject";
  if (!isIndex(x.rejectHint)) return "rejectHint";
  if (typeof x.context !== "string" || x.context.length > contextCharsMax) return "context";
  return entriesProblem(x) ?? snapshotProblem(x);
}

export function isMessage(m: unknown): m is Message {
  return messageProblem(m) === undefined;
}
