// Owns running the real-node simulator for seeds: one seed → params → run → result, many seeds in
// order, and the command that replays one.
import { type NodeSimBugs, NodeSimCluster, type NodeSimResult } from "./node-cluster.ts";
import { type NodeSimOverrides, nodeParamsForSeed } from "./params.ts";

export async function runNodeSeed(
  seed: number,
  o: NodeSimOverrides = {},
  bugs: NodeSimBugs = {},
): Promise<NodeSimResult> {
  return new NodeSimCluster(nodeParamsForSeed(seed, o), bugs).run();
}

export interface NodeCampaign {
  seeds: number;
  failures: NodeSimResult[];
  acked: number;
  reads: number;
  crashes: number;
  lostBatches: number;
  leaderFirstReadyCrashes: number;
  clientRestarts: number;
  reuseRefusals: number;
  snapChunksSent: number;
  snapChunksNeeded: number;
  snapshotsInstalled: number;
  events: number;
  wallMs: number;
}

export async function runNodeCampaign(
  from: number,
  seeds: number,
  o: NodeSimOverrides & { bugs?: NodeSimBugs; stopAtFirst?: boolean } = {},
): Promise<NodeCampaign> {
  const t0 = performance.now();
  const c: NodeCampaign = {
    seeds: 0,
    failures: [],
    acked: 0,
    reads: 0,
    crashes: 0,
    lostBatches: 0,
    leaderFirstReadyCrashes: 0,
    clientRestarts: 0,
    reuseRefusals: 0,
    snapChunksSent: 0,
    snapChunksNeeded: 0,
    snapshotsInstalled: 0,
    events: 0,
    wallMs: 0,
  };
  for (let seed = from; seed < from + seeds; seed++) {
    const r = await runNodeSeed(seed, o, o.bugs);
    c.seeds++;
    c.acked += r.acked;
    c.reads += r.reads;
    c.crashes += r.crashes;
    c.lostBatches += r.lostBatches;
    c.leaderFirstReadyCrashes += r.leaderFirstReadyCrashes;
    c.clientRestarts += r.clientRestarts;
    c.reuseRefusals += r.reuseRefusals;
    c.snapChunksSent += r.snapChunksSent;
    c.snapChunksNeeded += r.snapChunksNeeded;
    c.snapshotsInstalled += r.snapshotsInstalled;
    c.events += r.events;
    if (!r.ok) {
      c.failures.push(r);
      if (o.stopAtFirst) break;
    }
  }
  c.wallMs = performance.now() - t0;
  return c;
}

export function nodeReplayCommand(seed: number, o: NodeSimOverrides = {}, bugs: NodeSimBugs = {}): string {
  const b = Object.entries(bugs)
    .filter(([, on]) => on === true)
    .map(([k]) => ` --bug ${k}`)
    .join("");
  const flags = [
    o.nodes ? ` --nodes ${o.nodes}` : "",
    o.ackCrashFocus ? " --ack-crash" : "",
    o.clientRestarts ? " --client-restarts" : "",
    o.bandwidth ? " --bandwidth" : "",
    o.faults === false ? " --no-faults" : "",
  ].join("");
  return `npm run sim -- --driver node --seed ${seed}${flags}${b}`;
}
