// Owns the search for a linearization of one key's history: the Wing & Gong algorithm with Lowe's
// memoisation, as porcupine's checkSingle does it. Calls and returns sit in one doubly linked list
// in time order; taking an operation lifts its call and its return out of the list, so the list
// always holds what is still to place, and a return reached while scanning means the operation it
// closes had to take effect by then and could not. A (set of linearized ops, model state) pair seen
// before is never explored twice. Nondeterministic models (an indeterminate write) give several next
// states; each is one branch, remembered on the stack so that backtracking tries the next one.
import type { Op } from "./history.ts";
import type { Model } from "./model.ts";

interface Node {
  /** Index into the ops array; -1 for the head sentinel. */
  op: number;
  isCall: boolean;
  /** For a call, its return. */
  match: Node | undefined;
  prev: Node | undefined;
  next: Node | undefined;
}

interface Frame<S> {
  node: Node;
  before: S;
  alts: S[];
  alt: number;
}

export type SingleResult<S> =
  | { kind: "ok"; order: number[] }
  | { kind: "fail"; prefix: number[]; blocked: number; stateAfterPrefix: S }
  | { kind: "timeout"; explored: number };

function buildList<I, O>(ops: Op<I, O>[]): Node {
  const events: { t: number; isCall: boolean; op: number }[] = [];
  ops.forEach((o, i) => {
    events.push({ t: o.call, isCall: true, op: i });
    events.push({ t: o.ret, isCall: false, op: i });
  });
  // Equal times count as concurrent: a call sorts before a return at the same instant.
  events.sort((a, b) => (a.t !== b.t ? a.t - b.t : a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1));
  const head: Node = { op: -1, isCall: false, match: undefined, prev: undefined, next: undefined };
  const returns = new Map<number, Node>();
  let last = head;
  for (const e of events) {
    const n: Node = { op: e.op, isCall: e.isCall, match: undefined, prev: last, next: undefined };
    if (!e.isCall) returns.set(e.op, n);
    last.next = n;
    last = n;
  }
  for (let n = head.next; n; n = n.next) if (n.isCall) n.match = returns.get(n.op);
  return head;
}

function lift(n: Node): void {
  n.prev!.next = n.next;
  if (n.next) n.next.prev = n.prev;
  const m = n.match!;
  m.prev!.next = m.next;
  if (m.next) m.next.prev = m.prev;
}

function unlift(n: Node): void {
  const m = n.match!;
  m.prev!.next = m;
  if (m.next) m.next.prev = m;
  n.prev!.next = n;
  if (n.next) n.next.prev = n;
}

class Bitset {
  readonly words: Uint32Array;
  constructor(n: number) {
    this.words = new Uint32Array(Math.ceil(n / 32) || 1);
  }
  set(i: number): void {
    this.words[i >>> 5]! |= 1 << (i & 31);
  }
  clear(i: number): void {
    this.words[i >>> 5]! &= ~(1 << (i & 31));
  }
  key(): string {
    let s = "";
    for (const w of this.words) s += w.toString(36) + ",";
    return s;
  }
}

/** `deadline` is a Date.now() value; past it the search gives up and says so. */
export function checkSingle<S, I, O>(
  model: Model<S, I, O>,
  key: string,
  ops: Op<I, O>[],
  deadline: number,
): SingleResult<S> {
  const head = buildList(ops);
  const linearized = new Bitset(ops.length);
  const seen = new Set<string>();
  const stack: Frame<S>[] = [];
  let state = model.init(key);
  let entry = head.next;
  let best: { prefix: number[]; blocked: number; state: S } | undefined;
  let explored = 0;

  // Takes the first alternative from `from` on whose (linearized, state) pair is new.
  const tryAlts = (node: Node, before: S, alts: S[], from: number): boolean => {
    for (let a = from; a < alts.length; a++) {
      linearized.set(node.op);
      const next = alts[a]!;
      const k = model.stateKey(next) + "|" + linearized.key();
      if (!seen.has(k)) {
        seen.add(k);
        stack.push({ node, before, alts, alt: a });
        state = next;
        lift(node);
        return true;
      }
      linearized.clear(node.op);
    }
    return false;
  };

  while (head.next) {
    if ((explored++ & 255) === 0 && Date.now() >= deadline) return { kind: "timeout", explored };
    const n = entry!;
    if (n.isCall) {
      const op = ops[n.op]!;
      if (tryAlts(n, state, model.step(state, op.input, op.output), 0)) entry = head.next;
      else entry = n.next;
      continue;
    }
    // A return: the operation it closes cannot be placed after what the stack holds.
    if (!best || stack.length > best.prefix.length) {
      best = { prefix: stack.map((f) => ops[f.node.op]!.id), blocked: ops[n.op]!.id, state };
    }
    const top = stack.pop();
    if (!top)
      return { kind: "fail", prefix: best.prefix, blocked: best.blocked, stateAfterPrefix: best.state };
    state = top.before;
    linearized.clear(top.node.op);
    unlift(top.node);
    // The next alternative of the same op, else the ops after it in the list.
    entry = tryAlts(top.node, top.before, top.alts, top.alt + 1) ? head.next : top.node.next;
  }
  return { kind: "ok", order: stack.map((f) => ops[f.node.op]!.id) };
}
