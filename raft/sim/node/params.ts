// Owns how one seed becomes a real-node simulator run: cluster size, timing, disk and network
// latencies, which faults are on and how often, snapshot cadence and the client load.
import type { SnapshotFaults } from "../../storage/memory-snapshots.ts";
import { deriveSeed, Rng } from "../prng.ts";

export type NodeFault = "crash" | "partition" | "oneway";

export interface NodeSimParams {
  seed: number;
  nodes: 3 | 5;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  delayMsMin: number;
  delayMsMax: number;
  dropRate: number;
  duplicateRate: number;
  syncMsMin: number;
  syncMsMax: number;
  snapshotFaults: SnapshotFaults;
  snapshotEveryEntries: number;
  snapshotCatchUpEntries: number;
  faults: NodeFault[];
  faultEveryMs: number;
  downMsMax: number;
  partitionMsMax: number;
  clients: number;
  clientOpEveryMs: number;
  readRate: number;
  /**
   * Chance that the replica that just acknowledged a write crashes at that instant while one other
   * replica is cut off for a while: the moment a write counted before it was durable is lost.
   */
  crashOnAckRate: number;
  /**
   * Chance, after each failed attempt of a write, that its client restarts: it forgets the write in
   * flight and reuses its seq for its next command (it had saved only its last acknowledged seq).
   * 0 unless asked for (--client-restarts): the seeds' schedules stay as they were.
   */
  clientRestartRate: number;
  /**
   * Bytes per virtual ms a link carries (0: unlimited) and the snapshot chunk size: the bandwidth
   * profile (--bandwidth), where a snapshot costs its size and chunks are small enough that a
   * transfer takes many. Off unless asked for: the seeds' schedules stay as they were.
   */
  bandwidthBytesPerMs: number;
  snapshotChunkBytesMax: number | undefined;
  /** Virtual ms of faults, then of clients on a healed cluster, then at most this to converge. */
  faultMs: number;
  clientsAfterHealMs: number;
  convergeMsMax: number;
}

export interface NodeSimOverrides {
  nodes?: 3 | 5;
  /** Virtual ms of the fault phase. */
  faultMs?: number;
  /** false: no faults at all (a baseline). */
  faults?: boolean;
  /**
   * The durability profile: slow disks, frequent crashes of the replica that just acknowledged a
   * write, many clients writing and reading (where the node's shortcuts around fsync would show).
   */
  ackCrashFocus?: boolean;
  /** Clients restart mid-write and reuse the seq of the write they forgot (clientRestartRate). */
  clientRestarts?: boolean;
  /** Links with a bandwidth, snapshots in small chunks (bandwidthBytesPerMs). */
  bandwidth?: boolean;
}

export function nodeParamsForSeed(seed: number, o: NodeSimOverrides = {}): NodeSimParams {
  const r = new Rng(deriveSeed(seed, "node-params"));
  const nodes = o.nodes ?? (r.chance(0.7) ? 3 : 5);
  const faults: NodeFault[] = ["crash"];
  if (r.chance(0.6)) faults.push("partition");
  if (r.chance(0.3)) faults.push("oneway");
  if (r.chance(0.5)) faults.push("crash"); // crashes twice as often
  // Disks slower than the network make the window where an unsynced entry counts widest.
  const focus = o.ackCrashFocus ?? r.chance(0.25);
  const slowDisk = focus || r.chance(0.5);
  return {
    seed,
    nodes,
    tickMs: 10,
    electionTicks: 10,
    heartbeatTicks: 2,
    delayMsMin: r.pick([0.1, 0.5, 1]),
    delayMsMax: r.pick([2, 5, 10]),
    dropRate: r.pick([0, 0.01, 0.05]),
    duplicateRate: r.pick([0, 0.01]),
    syncMsMin: slowDisk ? 5 : 0.2,
    syncMsMax: slowDisk ? 25 : 3,
    snapshotFaults: {
      saveMsMin: 1,
      saveMsMax: 10,
      failRate: r.pick([0, 0, 0.2, 0.5]),
      stallRate: r.pick([0, 0.1]),
      stallMs: 500,
    },
    // Drawn for every seed (the draws stay in order); the bandwidth profile then snapshots often
    // and keeps no catch-up entries, so a follower behind gets a snapshot of many chunks.
    snapshotEveryEntries: unless(o.bandwidth, 20, r.pick([20, 50, 200])),
    snapshotCatchUpEntries: unless(o.bandwidth, 0, r.pick([0, 5, 50])),
    faults: o.faults === false ? [] : faults,
    faultEveryMs: r.pick([200, 400, 800]),
    downMsMax: r.pick([5, 50, 300]),
    partitionMsMax: r.pick([200, 800]),
    clients: focus ? r.int(3, 6) : r.int(1, 4),
    clientOpEveryMs: focus ? 2 : r.pick([2, 10, 30]),
    readRate: focus ? 0.4 : r.pick([0, 0.2, 0.5]),
    crashOnAckRate: o.faults === false ? 0 : focus ? 0.15 : 0,
    clientRestartRate: o.clientRestarts ? 0.2 : 0,
    // 50 bytes/ms: a heartbeat batch ~2 ms on the wire, a 64-byte chunk ~3 ms, a snapshot of the
    // registers (~0.5 KB) 8–10 chunks and tens of ms; appends of many entries longer.
    bandwidthBytesPerMs: o.bandwidth ? 50 : 0,
    snapshotChunkBytesMax: o.bandwidth ? 64 : undefined,
    faultMs: o.faultMs ?? 3_000,
    clientsAfterHealMs: 300,
    convergeMsMax: 10_000,
  };
}

/** `drawn`, unless `profile` sets `value` (the draw is made either way, so later draws stay as they were). */
function unless(profile: boolean | undefined, value: number, drawn: number): number {
  return profile ? value : drawn;
}

export function describeNodeParams(p: NodeSimParams): string {
  return JSON.stringify({ ...p, snapshotFaults: undefined, ...{ snapshot: p.snapshotFaults } });
}
