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

/** What seeds add up to: the campaign's, a soak worker's and a test suite's totals, in one list. */
const countNames = [
  "seeds",
  "acked",
  "reads",
  "crashes",
  "lostBatches",
  "leaderFirstReadyCrashes",
  "clientRestarts",
  "reuseRefusals",
  "snapChunksSent",
  "snapChunksNeeded",
  "snapshotsInstalled",
  "events",
] as const;

export type NodeCounts = Record<(typeof countNames)[number], number>;

export function emptyCounts(): NodeCounts {
  return Object.fromEntries(countNames.map((k) => [k, 0])) as NodeCounts;
}

/** Adds `from`'s counts into `into` (a seed's result counts as one seed). */
export function addCounts(into: NodeCounts, from: Partial<NodeCounts>): void {
  for (const k of countNames) into[k] += from[k] ?? (k === "seeds" ? 1 : 0);
}

export interface NodeCampaign extends NodeCounts {
  failures: NodeSimResult[];
  wallMs: number;
}

export async function runNodeCampaign(
  from: number,
  seeds: number,
  o: NodeSimOverrides & { bugs?: NodeSimBugs; stopAtFirst?: boolean } = {},
): Promise<NodeCampaign> {
  const t0 = performance.now();
  const c: NodeCampaign = { ...emptyCounts(), failures: [], wallMs: 0 };
  for (let seed = from; seed < from + seeds; seed++) {
    const r = await runNodeSeed(seed, o, o.bugs);
    addCounts(c, r);
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
