// Owns the core simulator's safety invariants and the state they need, checked as the run goes:
// election safety (one leader per term; one durable vote per term), log matching (on every append),
// leader completeness (when a replica first leads a term), state machine safety (on every apply),
// monotonic commit (per replica, and durable commit across restarts), applied ≤ committed, and
// linearizable reads. A broken one throws a Violation: the run stops there, and the seed replays it.
// The checks only read what the driver hands them, so they draw nothing from the run's randomness.
import type { Entry, HardState, ReadState } from "../core/index.ts";
import type { SimNode } from "./replica.ts";

export class Violation extends Error {
  override readonly name = "Violation";
}

export function sameEntry(a: Entry, b: Entry): boolean {
  if (a === b) return true;
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  for (let i = 0; i < a.data.byteLength; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}

export class SafetyChecker {
  readonly leaderOfTerm = new Map<number, string>();
  /** index → the entry committed (applied) there, first seen. */
  private readonly committedLog = new Map<number, Entry>();
  /** Highest index committed (applied) anywhere. */
  maxCommitted = 0;
  /**
   * index → lowest term in which some replica saw it committed. A replica learns of a commit in a
   * term ≥ the committing leader's, so this bounds the commit term from above: checking leaders of
   * later terms only is sound (no false alarms) — a stale candidate of an older term may lack it.
   */
  private readonly commitTerm = new Map<number, number>();
  /** index → term → (entry, term of the entry before it): log matching, checked on every append. */
  private readonly appended = new Map<number, Map<number, { e: Entry; prevTerm: number | undefined }>>();

  /** After every step of a replica: commit monotonic, applied ≤ committed, one leader per term. */
  checkNode(n: SimNode): void {
    const c = n.core!;
    if (c.committed < n.lastCommit) {
      throw new Violation(`${n.id}: commit went back ${n.lastCommit} → ${c.committed}`);
    }
    if (c.committed > n.lastCommit) {
      const t = c.currentTerm;
      for (let i = n.lastCommit + 1; i <= c.committed; i++) {
        const known = this.commitTerm.get(i);
        if (known === undefined || t < known) this.commitTerm.set(i, t);
      }
    }
    n.lastCommit = c.committed;
    if (c.applied > c.committed || n.sm.applied > c.committed) {
      throw new Violation(`${n.id}: applied ${n.sm.applied} beyond commit ${c.committed}`);
    }
    if (c.currentRole === "leader") {
      const t = c.currentTerm;
      const prev = this.leaderOfTerm.get(t);
      if (prev === undefined) {
        this.leaderOfTerm.set(t, n.id);
        this.checkLeaderCompleteness(n);
      } else if (prev !== n.id) {
        throw new Violation(`election safety: ${prev} and ${n.id} both leaders of term ${t}`);
      }
    }
  }

  /** Every entry committed in an earlier term is in the new leader's log (or under its snapshot). */
  private checkLeaderCompleteness(n: SimNode): void {
    const c = n.core!;
    const first = c.status().firstIndex;
    const term = c.currentTerm;
    for (let i = first; i <= this.maxCommitted; i++) {
      const g = this.committedLog.get(i);
      const ct = this.commitTerm.get(i);
      if (!g || ct === undefined || ct >= term) continue;
      const t = c.logTerm(i);
      if (t !== g.term) {
        throw new Violation(
          `leader completeness: ${n.id} leads term ${c.currentTerm} with term ${t} at ${i}, committed term ${g.term}`,
        );
      }
    }
  }

  /** Log matching, incrementally: an (index, term) pair always names the same entry after the same term. */
  checkAppended(n: SimNode, es: Entry[]): void {
    for (let k = 0; k < es.length; k++) {
      const e = es[k]!;
      const prevTerm = k > 0 ? es[k - 1]!.term : e.index === 1 ? 0 : n.core?.logTerm(e.index - 1);
      let byTerm = this.appended.get(e.index);
      if (!byTerm) {
        byTerm = new Map();
        this.appended.set(e.index, byTerm);
      }
      const rec = byTerm.get(e.term);
      if (!rec) {
        byTerm.set(e.term, { e, prevTerm });
        continue;
      }
      if (!sameEntry(rec.e, e)) {
        throw new Violation(`log matching: ${n.id} has a different entry at index ${e.index} term ${e.term}`);
      }
      if (prevTerm !== undefined && rec.prevTerm !== undefined && prevTerm !== rec.prevTerm) {
        throw new Violation(
          `log matching: ${n.id} entry ${e.index}/${e.term} follows term ${prevTerm}, elsewhere ${rec.prevTerm}`,
        );
      }
    }
  }

  /** A hard state about to replace `old` on n's disk: durable term and commit never go back, one vote per term. */
  checkHardState(n: SimNode, h: HardState, old: HardState): void {
    if (h.term < old.term) throw new Violation(`${n.id}: durable term went back`);
    if (h.commit < old.commit) throw new Violation(`${n.id}: durable commit went back`);
    if (h.term === old.term && old.vote !== "" && h.vote !== "" && h.vote !== old.vote) {
      throw new Violation(
        `election safety: ${n.id} voted twice in term ${old.term} (${old.vote}, then ${h.vote})`,
      );
    }
  }

  /**
   * n applies `e` next: in order, once, and the same entry every replica applied at that index
   * (state machine safety). True when no replica had applied that index before.
   */
  checkApplied(n: SimNode, e: Entry): boolean {
    if (e.index !== n.sm.applied + 1) {
      throw new Violation(`${n.id}: applied ${e.index} after ${n.sm.applied} (gap or repeat)`);
    }
    const g = this.committedLog.get(e.index);
    if (!g) {
      this.committedLog.set(e.index, e);
      if (e.index > this.maxCommitted) this.maxCommitted = e.index;
      return true;
    }
    if (!sameEntry(g, e)) {
      throw new Violation(
        `state machine safety: ${n.id} applied term ${e.term} at ${e.index}, another replica term ${g.term}`,
      );
    }
    return false;
  }

  /** Linearizable read: it saw every write acknowledged before it started. */
  checkRead(n: SimNode, rs: ReadState, ackedAtStart: number): void {
    if (rs.index < ackedAtStart) {
      throw new Violation(
        `stale read ${rs.context} at ${n.id}: read index ${rs.index} < acknowledged write ${ackedAtStart}`,
      );
    }
  }
}
