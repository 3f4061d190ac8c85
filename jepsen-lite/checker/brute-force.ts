// Owns the reference the WGL checker is tested against: try every order of the whole history (no
// per-key split, no memo) that respects real time — a before b whenever a returned before b was
// called — and every outcome of every nondeterministic step. Exponential: for histories of a few
// operations only.
import type { Op } from "./history.ts";
import type { Model } from "./model.ts";

export function bruteForceLinearizable<S, I, O>(model: Model<S, I, O>, history: Op<I, O>[]): boolean {
  const n = history.length;
  const placed = new Array<boolean>(n).fill(false);
  const go = (states: Map<string, S>, count: number): boolean => {
    if (count === n) return true;
    for (let i = 0; i < n; i++) {
      if (placed[i]) continue;
      const op = history[i]!;
      // Some op still unplaced returned before this one was called: this one cannot go next.
      const blocked = history.some((o, j) => !placed[j] && j !== i && o.ret < op.call);
      if (blocked) continue;
      const cur = states.has(op.key) ? states.get(op.key)! : model.init(op.key);
      for (const next of model.step(cur, op.input, op.output)) {
        placed[i] = true;
        const after = new Map(states).set(op.key, next);
        const ok = go(after, count + 1);
        placed[i] = false;
        if (ok) return true;
      }
    }
    return false;
  };
  return go(new Map(), 0);
}
