// Owns a run's directory under jepsen-lite/store/<run>/ (git-ignored): history.jsonl (one line per
// op and per fault, in time order), results.json (the verdict and the numbers), index.html (the
// report: jepsen-lite/report/) and each replica process's log.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Op, opToJson } from "./checker/history.ts";
import type { FaultRecord } from "./nemesis.ts";
import { renderReport } from "./report/html.ts";
import type { ReportOp, ReportRun } from "./report/model.ts";

export const storeRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), "store");

export function runDir(run: string, root = storeRoot): string {
  const dir = path.join(root, run);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function writeHistory(dir: string, ops: Op<unknown, unknown>[], faults: FaultRecord[]): string {
  const lines = [
    ...ops.map((op) => ({ t: op.call, line: { type: "op", ...opToJson(op) } })),
    ...faults.map((f) => ({ t: f.start, line: { type: "fault", ...f } })),
  ]
    .sort((a, b) => a.t - b.t)
    .map((x) => JSON.stringify(x.line));
  const file = path.join(dir, "history.jsonl");
  writeFileSync(file, lines.join("\n") + "\n");
  return file;
}

export function writeJson(dir: string, name: string, value: unknown): string {
  const file = path.join(dir, name);
  writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
  return file;
}

export function writeLog(dir: string, name: string, lines: string[]): void {
  writeFileSync(path.join(dir, name), lines.join("\n") + "\n");
}

/** Writes the run's report page, index.html. */
export async function writeReport(dir: string, run: ReportRun, history: ReportOp[]): Promise<string> {
  const file = path.join(dir, "index.html");
  writeFileSync(file, await renderReport(run, history));
  return file;
}
