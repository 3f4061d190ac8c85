// Owns membership (single-server changes, §4.1), as etcd's confchange/ package owns its Changer:
// what configuration a change proposes (and why one is refused), which configuration is in effect
// at any log index (a configuration takes effect as soon as its entry is appended, not when it
// commits, so the conf entries since the snapshot are tracked and a truncated suffix takes its
// entries' configurations with it), and how the leader's per-member progress follows a new
// configuration. RaftCore decides when a change may be proposed at all. Pure, like the rest of the core.
import { Progress } from "./progress.ts";
import {
  type ConfChange,
  type ConfState,
  copyConf,
  decodeConfState,
  type Entry,
  EntryType,
  RaftError,
} from "./types.ts";

/**
 * The configuration `cc` makes of `conf`, or a RaftError: CONF_CHANGE_INVALID for a change that
 * makes no sense here (or would remove the leader `self`: transfer leadership first, §4.2.2),
 * LEARNER_NOT_CAUGHT_UP for a promotion of a learner whose `matchOf` is below `committed`.
 */
export function changeConf(
  conf: ConfState,
  cc: ConfChange,
  self: string,
  committed: number,
  matchOf: (id: string) => number,
): ConfState {
  const voters = [...conf.voters];
  const learners = [...conf.learners];
  const addresses = { ...(conf.addresses ?? {}) };
  const id = cc.nodeId;
  const invalid = (why: string) => new RaftError("CONF_CHANGE_INVALID", `${cc.type} ${id}: ${why}`);
  switch (cc.type) {
    case "addVoter":
      if (voters.includes(id)) throw invalid("already a voter");
      if (learners.includes(id)) learners.splice(learners.indexOf(id), 1);
      voters.push(id);
      break;
    case "addLearner":
      if (voters.includes(id) || learners.includes(id)) throw invalid("already a member");
      learners.push(id);
      break;
    case "removeNode":
      delete addresses[id];
      if (id === self) throw invalid("the leader cannot remove itself; transfer leadership first");
      if (voters.includes(id)) voters.splice(voters.indexOf(id), 1);
      else if (learners.includes(id)) learners.splice(learners.indexOf(id), 1);
      else throw invalid("not a member");
      break;
    case "promoteLearner": {
      if (!learners.includes(id)) throw invalid("not a learner");
      const match = matchOf(id);
      if (match < committed) {
        throw new RaftError("LEARNER_NOT_CAUGHT_UP", `learner ${id} at ${match}, commit ${committed}`);
      }
      learners.splice(learners.indexOf(id), 1);
      voters.push(id);
      break;
    }
  }
  if ((cc.type === "addLearner" || cc.type === "addVoter") && cc.address) addresses[id] = cc.address;
  return { voters, learners, addresses };
}

/** The configuration at the storage snapshot, and every conf entry in the log since. */
export class ConfLog {
  private base: ConfState;
  private entries: { index: number; conf: ConfState }[] = [];

  constructor(base: ConfState) {
    this.base = copyConf(base);
  }

  /** The newest configuration: the one in effect now. */
  current(): ConfState {
    return this.entries[this.entries.length - 1]?.conf ?? this.base;
  }

  /** The configuration in effect at log index `index` (a snapshot there records it). */
  at(index: number): ConfState {
    for (let k = this.entries.length - 1; k >= 0; k--) {
      const c = this.entries[k]!;
      if (c.index <= index) return c.conf;
    }
    return this.base;
  }

  /** A snapshot replaced the log: its configuration is the base, no conf entry follows it yet. */
  restore(base: ConfState): ConfState {
    this.base = copyConf(base);
    this.entries = [];
    return this.base;
  }

  /**
   * Entries were appended, maybe replacing a suffix: drops the conf entries they replace, records
   * theirs. True when that changed the list (the caller switches to current()).
   */
  noteAppended(es: Entry[]): boolean {
    const first = es[0];
    if (!first) return false;
    let changed = false;
    while (this.entries.length > 0 && this.entries[this.entries.length - 1]!.index >= first.index) {
      this.entries.pop();
      changed = true;
    }
    for (const e of es) {
      if (e.type === EntryType.ConfChange) {
        this.entries.push({ index: e.index, conf: decodeConfState(e.data) });
        changed = true;
      }
    }
    return changed;
  }
}

/**
 * Brings the progress map in line with configuration `c`: drops non-members, marks learners, and
 * gives a new member fresh progress from `next` (this node's own from what it has durable,
 * `selfMatch`: the leader counts only durable entries of its own toward a commit).
 */
export function syncProgress(
  prs: Map<string, Progress>,
  c: ConfState,
  self: string,
  next: number,
  selfMatch: number,
  inflightMessagesMax: number,
): void {
  const members = new Set([...c.voters, ...c.learners]);
  for (const id of [...prs.keys()]) if (!members.has(id)) prs.delete(id);
  for (const id of members) {
    const learner = c.learners.includes(id);
    const pr = prs.get(id);
    if (pr) pr.learner = learner;
    else {
      const fresh = new Progress(next, learner, inflightMessagesMax);
      if (id === self) fresh.match = selfMatch;
      prs.set(id, fresh);
    }
  }
}
