// Owns what one workload brings to a run: the system it starts (an inventory cluster behind its link
// proxies, or two appointment services on a Redis of the run's own), the faults that system takes,
// the clients it drives, how everything is healed, the liveness write after the final heal, and the
// check of its history. run.ts drives any of them the same way.
import type { Op } from "./checker/history.ts";
import type { CheckResult } from "./checker/linearizable.ts";
import type { NemesisSystem } from "./nemesis.ts";
import type { LinkStats } from "./proxy.ts";
import type { Random } from "./random.ts";

export interface Harness<O extends Op<unknown, unknown>> {
  readonly workload: string;
  /** Replicas of the system under test (the proxies' stats and the faults depend on it). */
  readonly replicas: number;
  readonly system: NemesisSystem;
  /** Starts the system and sets up what the workload needs (all before the run clock's faults). */
  start(): Promise<void>;
  drive(o: { random: Random; now: () => number; stopped: () => boolean }): Promise<O[]>;
  /** Undoes every fault still in force (links passed, paused processes continued, dead ones restarted). */
  healAll(): Promise<void>;
  /** One fresh write, acknowledged within the bound or not. */
  liveness(boundMs: number): Promise<boolean>;
  links(): ({ link: string } & LinkStats)[];
  /** Each process's log lines, for the store. */
  logs(): { name: string; lines: string[] }[];
  stop(): Promise<void>;
  check(history: O[], budgetMs: number): CheckResult;
}
