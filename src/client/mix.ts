// Owns the scenario mix: which scenarios exist, how `browse=70,book=20` becomes weights, and the
// weighted draw that picks the next request's scenario.
import { UsageError } from "./usage-error.ts";

export const scenarioNames = [
  "browse",
  "book",
  "cancel",
  "prescribe",
  "restock",
  "transfer",
  "deduct",
] as const;
export type ScenarioName = (typeof scenarioNames)[number];

export const isScenarioName = (s: string): s is ScenarioName =>
  (scenarioNames as readonly string[]).includes(s);

/** Weight per scenario; only positive weights are kept. */
export type Mix = Partial<Record<ScenarioName, number>>;

export const defaultMix: Mix = {
  browse: 55,
  book: 15,
  cancel: 5,
  prescribe: 5,
  restock: 8,
  transfer: 4,
  deduct: 8,
};

const weightMax = 1_000_000;

function checkWeight(name: string, w: number, flag: string): void {
  if (!isScenarioName(name)) {
    throw new UsageError(flag, `unknown scenario "${name}" (known: ${scenarioNames.join(", ")})`);
  }
  if (!Number.isFinite(w) || w < 0 || w > weightMax) {
    throw new UsageError(flag, `weight of ${name} must be a number from 0 to ${weightMax}`);
  }
}

/** Validates a mix (from a flag or a scenario file): known names, weights ≥ 0, at least one > 0. */
export function checkMix(entries: [string, number][], flag: string): Mix {
  const mix: Mix = {};
  for (const [name, w] of entries) {
    checkWeight(name, w, flag);
    if (Object.hasOwn(mix, name)) throw new UsageError(flag, `${name} is given twice`);
    if (w > 0) mix[name as ScenarioName] = w;
  }
  if (Object.keys(mix).length === 0) throw new UsageError(flag, "no scenario has a weight above 0");
  return mix;
}

/** `browse=70,book=20,cancel=10` → weights. */
export function parseMix(s: string, flag = "--mix"): Mix {
  const entries: [string, number][] = [];
  for (const part of s.split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const m = /^([a-z]+)=([0-9]+(?:\.[0-9]+)?)$/.exec(item);
    if (!m) throw new UsageError(flag, `"${item}" is not name=weight (e.g. browse=70,book=20)`);
    entries.push([m[1]!, Number(m[2])]);
  }
  return checkMix(entries, flag);
}

/** Picks a scenario with probability weight / total; `random` in [0, 1). */
export function picker(mix: Mix, random: () => number = Math.random): () => ScenarioName {
  const names = scenarioNames.filter((n) => (mix[n] ?? 0) > 0);
  const cumulative: number[] = [];
  let total = 0;
  for (const n of names) {
    total += mix[n]!;
    cumulative.push(total);
  }
  return () => {
    const x = random() * total;
    for (let i = 0; i < names.length; i++) if (x < cumulative[i]!) return names[i]!;
    return names[names.length - 1]!;
  };
}
