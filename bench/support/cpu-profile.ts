// Reads V8 CPU profiles (node --cpu-prof) for the benchmarks' profiling tools: self time per
// function and per origin (package, Node, our folders) and inclusive time of our own functions,
// counting only the samples of a time window (the load), idle excluded.
import { readFileSync } from "node:fs";
import { markdownTable } from "./machine.ts";

interface ProfileNode {
  id: number;
  children?: number[];
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code comes from: a package, Node itself, or one of our folders. */
function origin(url: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith("node:")) return "node";
  const ours = /\/(src\/[^/]+|raft\/[^/]+)\//.exec(url);
  if (ours) return ours[1]!;
  return url === "" ? "(native)" : url;
}

/**
 * Self time per function and per origin, counting only samples taken during the load (V8 profile
 * timestamps and process.hrtime share the monotonic clock), idle excluded: shares of busy time.
 */
export function hottest(file: string, fromUs: number, toUs: number, top: number): string {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  let total = 0;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (t < fromUs || t > toUs) continue;
    const n = byId.get(p.samples[i]!)!;
    if (n.callFrame.functionName === "(idle)") continue;
    total++;
    const url = n.callFrame.url
      .replace(/^.*node_modules\//, "")
      .replace(/^file:\/\/.*?\/(src|raft)\//, "$1/");
    const key = `${n.callFrame.functionName || "(anon)"} ${url}`;
    self.set(key, (self.get(key) ?? 0) + 1);
    const o = origin(n.callFrame.url);
    byOrigin.set(o, (byOrigin.get(o) ?? 0) + 1);
    // Inclusive time of our own functions: each counted once per sample however deep it recurs.
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      if (!/\/(src|raft)\//.test(f.url) || f.url.includes("node_modules")) continue;
      const k = `${f.functionName || "(anon)"} ${f.url.replace(/^.*?\/(src|raft)\//, "$1/")}`;
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + 1);
    }
  }
  const rank = (m: Map<string, number>, k: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, v]) => [`${((100 * v) / total).toFixed(1)}%`, name]);
  return [
    markdownTable(["self", "origin"], rank(byOrigin, 12)),
    markdownTable(["self", "function"], rank(self, top)),
    markdownTable(["inclusive", "our function"], rank(inclusive, top)),
  ].join("\n\n");
}
