// Owns what the report reads of a run and the words and outcome classes shared by its parts, for
// the ops of every workload (stock, bank, booking): an op is ok (answered), failed (a definite
// refusal, e.g. INSUFFICIENT_STOCK or SLOT_TAKEN) or indeterminate (no answer: it may or may not
// have taken effect).
import type { Failure } from "../checker/linearizable.ts";
import type { Health } from "../nemesis.ts";
import type { BankOp } from "../workloads/bank.ts";
import type { BookingOp } from "../workloads/booking.ts";
import type { StockOp } from "../workloads/stock.ts";

/** An op of any workload's history (run.ts RunOp; not imported from there, which imports the report). */
export type ReportOp = StockOp | BankOp | BookingOp;

export type Outcome = "ok" | "failed" | "indeterminate";

export interface ReportFault {
  kind: string;
  target: string;
  start: number;
  end: number;
  /** ms from the fault's start until a majority agreed on a leader again (-1: never seen). */
  leaderAfterMs?: number;
  /** The health checks just before the fault and just after its heal (nemesis.ts). */
  healthBefore?: Health;
  healthAfter?: Health;
  /** The parts of one combo share its number. */
  combo?: number;
}

export type ReportFailure = Pick<Failure, "key" | "prefix" | "blocked" | "explanation" | "stateAfterPrefix">;

/** The part of a run's results.json the report shows. */
export interface ReportRun {
  run: string;
  workload: string;
  nemesis: string;
  seed: number;
  failpoints?: string[];
  valid: "ok" | "fail" | "unknown";
  livenessMs: number;
  check: { result: "ok" | "fail" | "unknown"; failure?: ReportFailure; reason?: string; elapsedMs: number };
  faults: ReportFault[];
}

export function outcomeOf(op: ReportOp): Outcome {
  if (op.output === undefined) return "indeterminate";
  return op.output.ok ? "ok" : "failed";
}

/** What the op asked, for every workload's inputs (no patient id: it is not the report's to show). */
export function describeInput(op: ReportOp): string {
  const i = op.input;
  switch (i.f) {
    case "read":
      return "account" in i ? `read account ${i.account}` : "read";
    case "restock":
    case "deduct":
      return `${i.f} ${i.qty}`;
    case "transfer":
      return `transfer ${i.amount} from account ${i.from} to ${i.to}`;
    case "book":
      return `book s${i.slot}`;
    case "cancel":
      return `cancel s${i.slot}`;
  }
}

export function describeOutput(op: ReportOp): string {
  const o = op.output;
  if (o === undefined) return `no answer${op.error ? ` (${op.error})` : ""}`;
  const via =
    "instance" in op && op.instance !== undefined
      ? ` via instance ${op.instance}`
      : "replica" in op && op.replica !== undefined
        ? ` at ${op.replica}`
        : "";
  if (!o.ok)
    return `${o.error}${"available" in o && o.available !== undefined ? `, available ${o.available}` : ""}${via}`;
  if ("quantity" in o) return `ok, quantity ${o.quantity}${via}`;
  if ("balance" in o) return `ok, balance ${o.balance}`;
  if ("free" in o)
    return `ok, free ${o.free.map((s) => `s${s}`).join(" ") || "none"} (instance ${o.instance}, tier ${o.tier})`;
  if ("appointmentId" in o) return `ok, appointment ${o.appointmentId}${via}`;
  return `ok, cancelled${via}`;
}

/**
 * A fault in one line: what, where, when, its combo, the leader and health around it. `leaders`:
 * the system elects one (the inventory cluster; not the booking workload's Redis).
 */
export function describeFault(f: ReportFault, leaders = true): string {
  const health = (h: Health | undefined) =>
    h === undefined
      ? ""
      : `${leaders ? `leader ${h.leader || "none"}, ` : ""}probe write ${h.writeMs >= 0 ? `${Math.round(h.writeMs)} ms` : "not acknowledged"}`;
  return [
    `${f.kind} ${f.target} ${Math.round(f.start)}–${Math.round(f.end)} ms`,
    f.combo === undefined ? "" : `combo ${f.combo}`,
    !leaders || f.leaderAfterMs === undefined
      ? ""
      : `leader again ${f.leaderAfterMs >= 0 ? `after ${Math.round(f.leaderAfterMs)} ms` : "never seen"}`,
    f.healthBefore ? `before: ${health(f.healthBefore)}` : "",
    f.healthAfter ? `after the heal: ${health(f.healthAfter)}` : "",
  ]
    .filter((p) => p.length > 0)
    .join(" · ");
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
