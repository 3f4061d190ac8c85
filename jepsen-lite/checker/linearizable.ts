// Owns checking a whole history for linearizability: split it per key (a history is linearizable
// iff each key's sub-history is: P-compositionality), search each with WGL under one shared time
// budget, and say "unknown" rather than "ok" when the budget ran out before every key was settled.
// A failure names the key, the longest linearizable prefix found, the operation that cannot be
// placed after it, and why, in words.
import type { Op } from "./history.ts";
import type { Model } from "./model.ts";
import { checkSingle } from "./wgl.ts";

export interface CheckOptions {
  /** Wall-clock budget for the whole search. */
  budgetMs?: number;
}

export interface KeySummary {
  key: string;
  ops: number;
  indeterminate: number;
  result: "ok" | "fail" | "unknown";
}

export interface Failure {
  key: string;
  /** Op ids, in the order linearized: the longest prefix the search could explain. */
  prefix: number[];
  /** The op that must take effect next (its return comes first among the rest) and cannot. */
  blocked: number;
  stateAfterPrefix: string;
  explanation: string;
}

export interface CheckResult {
  result: "ok" | "fail" | "unknown";
  ops: number;
  keys: KeySummary[];
  elapsedMs: number;
  /** Set when result is "fail". */
  failure?: Failure;
  /** Set when result is "unknown". */
  reason?: string;
}

export const defaultBudgetMs = 10_000;

export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: Op<I, O>[],
  options: CheckOptions = {},
): CheckResult {
  const started = Date.now();
  const deadline = started + (options.budgetMs ?? defaultBudgetMs);
  const byKey = new Map<string, Op<I, O>[]>();
  for (const op of history) {
    const list = byKey.get(op.key);
    if (list) list.push(op);
    else byKey.set(op.key, [op]);
  }
  const keys: KeySummary[] = [];
  let failure: Failure | undefined;
  let timedOut = false;
  for (const [key, ops] of [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const summary: KeySummary = {
      key,
      ops: ops.length,
      indeterminate: ops.filter((o) => o.output === undefined).length,
      result: "unknown",
    };
    keys.push(summary);
    // After a timeout the rest stay "unknown"; after a failure the others are still checked, so
    // the report says which keys are fine.
    if (timedOut) continue;
    const r = checkSingle(model, key, ops, deadline);
    if (r.kind === "ok") summary.result = "ok";
    else if (r.kind === "timeout") timedOut = true;
    else {
      summary.result = "fail";
      if (failure) continue;
      const blocked = ops.find((o) => o.id === r.blocked)!;
      failure = {
        key,
        prefix: r.prefix,
        blocked: r.blocked,
        stateAfterPrefix: model.describeState(r.stateAfterPrefix),
        explanation:
          `after the ${r.prefix.length} operations of the longest linearizable prefix on ${key}, ` +
          `op ${blocked.id} (client ${blocked.client}: ${model.describeOp(blocked.input, blocked.output)}) ` +
          `had to take effect before it returned, and cannot: ` +
          model.explain(r.stateAfterPrefix, blocked.input, blocked.output) +
          `; no other order of the concurrent operations explains it either`,
      };
    }
  }
  const elapsedMs = Date.now() - started;
  if (failure) return { result: "fail", ops: history.length, keys, elapsedMs, failure };
  if (timedOut) {
    return {
      result: "unknown",
      ops: history.length,
      keys,
      elapsedMs,
      reason: `time budget of ${options.budgetMs ?? defaultBudgetMs} ms ran out`,
    };
  }
  return { result: "ok", ops: history.length, keys, elapsedMs };
}
