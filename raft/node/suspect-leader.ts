// Owns the early election after the transport saw the leader's connection refused or reset (the
// process is gone): instead of waiting out the election timeout, a follower starts a pre-vote round
// after a random 0–150 ms, and again every 100–250 ms while no leader emerges. A follower that still
// hears from a live leader refuses (its CheckQuorum lease), so a live leader is not disturbed; when
// the leader is dead, its other followers saw the same reset and drop their leases as they
// campaign, and the jitter lets one of them win without split votes. Safety never depends on when
// an election starts; only how soon a dead leader is replaced does.
import type { RaftCore } from "../core/raft.ts";
import type { Scheduler } from "./scheduler.ts";

export interface SuspectHost {
  readonly id: string;
  readonly clock: Scheduler;
  /** The node's election jitter source. */
  random(): number;
  core(): RaftCore;
  stopped(): boolean;
  /** Runs `fn` on the node's loop, between Ready rounds. */
  enqueue(fn: () => void): void;
}

export class SuspectLeader {
  /** The leader our transport saw go away, until we hear from it again. */
  private suspect: string | undefined;

  constructor(private readonly host: SuspectHost) {}

  /** A message from `from` arrived: if we suspected it, it is alive after all. */
  heardFrom(from: string): void {
    if (from === this.suspect) this.suspect = undefined;
  }

  /** The transport lost its connection to `peerId`. */
  unreachable(peerId: string): void {
    const h = this.host;
    h.enqueue(() => {
      if (peerId === h.id || h.core().leader !== peerId || this.suspect === peerId) return;
      this.suspect = peerId;
      this.schedule(0, 150);
    });
  }

  private schedule(minMs: number, maxMs: number): void {
    const h = this.host;
    h.clock.after(
      minMs + h.random() * (maxMs - minMs),
      () =>
        h.enqueue(() => {
          const s = this.suspect;
          if (s === undefined || h.stopped()) return;
          const core = h.core();
          const leader = core.leader;
          if (leader !== "" && leader !== s) {
            this.suspect = undefined; // someone else leads now
            return;
          }
          const role = core.currentRole;
          if (role === "follower" || role === "preCandidate") core.campaign();
          this.schedule(100, 250);
        }),
      true,
    );
  }
}
