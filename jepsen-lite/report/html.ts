// Owns a run's report page, index.html in its store directory, for any workload's history: the
// verdict and what was run, for a failure the checker's explanation with (stock, bank) the longest
// linearizable prefix and the op that cannot be placed or (booking) the op its checks reject, the
// faults with their health checks, the timeline (lanes, faults, the failing op highlighted) and the
// latency and throughput plots. Self-contained: styles and SVG inline, no script, nothing fetched.
import {
  describeFault,
  describeInput,
  describeOutput,
  escapeXml as esc,
  outcomeOf,
  type ReportOp,
  type ReportRun,
} from "./model.ts";
import { latencySvg, throughputSvg } from "./plots.ts";
import { timelineSvg } from "./timeline.ts";

const style = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: bold; }
.verdict.ok { background: #2e7d32; } .verdict.fail { background: #c62828; } .verdict.unknown { background: #757575; }
table.facts td { padding: 1px 12px 1px 0; vertical-align: top; }
.explanation { border-left: 4px solid #c62828; background: #fdecea; padding: 8px 12px; max-width: 1200px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 22px; height: 10px; margin-right: 4px; vertical-align: middle; border-radius: 2px; }
.scroll { overflow-x: auto; }
rect.op.ok { fill: #66bb6a; } rect.op.failed { fill: #ffa726; }
rect.op.indeterminate { fill: #bdbdbd; fill-opacity: 0.6; stroke: #757575; stroke-dasharray: 3 2; }
rect.op.other-key { opacity: 0.25; }
rect.op.in-prefix { stroke: #1565c0; stroke-width: 1; }
rect.op.blocked { fill: #d50000; stroke: #000; stroke-width: 2; opacity: 1; }
ol.prefix { columns: 4; font-size: 12px; max-width: 1200px; }
ol.prefix li.blocked { color: #d50000; font-weight: bold; }
`;

function opLine(op: ReportOp): string {
  const ret = Number.isFinite(op.ret) ? `${Math.round(op.ret)}` : "∞";
  return `op ${op.id} (client ${op.client}, ${op.key}): ${describeInput(op)} → ${describeOutput(op)} [${Math.round(op.call)}–${ret} ms]`;
}

export async function renderReport(run: ReportRun, history: ReportOp[]): Promise<string> {
  const failure = run.check.failure;
  // The booking checks are not a linearizability search (booking.ts checkBooking): no prefix, and
  // the failing op is judged against ops on other keys; its Redis elects no leader.
  const linearizability = run.workload !== "booking";
  const byId = new Map(history.map((op) => [op.id, op]));
  const counts = { ok: 0, failed: 0, indeterminate: 0 };
  for (const op of history) counts[outcomeOf(op)]++;
  const [latency, throughput] = await Promise.all([
    latencySvg(history, run.faults),
    throughputSvg(history, run.faults),
  ]);
  const parts: string[] = [
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8"><title>jepsen-lite ${esc(run.run)}</title><style>${style}</style></head><body>`,
    `<h1>jepsen-lite run <code>${esc(run.run)}</code> <span class="verdict ${run.valid}" id="verdict">${run.valid}</span></h1>`,
    `<table class="facts">`,
    `<tr><td>workload</td><td>${esc(run.workload)}</td><td>nemesis</td><td>${esc(run.nemesis)}</td><td>seed</td><td>${run.seed}</td></tr>`,
    `<tr><td>failpoints</td><td>${esc((run.failpoints ?? []).join(", ") || "none")}</td><td>checker</td><td>${run.check.result} in ${Math.round(run.check.elapsedMs)} ms</td><td>liveness</td><td>${run.livenessMs >= 0 ? `${Math.round(run.livenessMs)} ms after the last heal` : "no write acknowledged after the last heal"}</td></tr>`,
    `<tr><td>ops</td><td>${history.length}: ${counts.ok} ok, ${counts.failed} failed, ${counts.indeterminate} indeterminate</td><td>faults</td><td colspan="3">${run.faults.length || "none"} (listed below the timeline)</td></tr>`,
    `</table>`,
  ];
  if (run.check.reason)
    parts.push(`<p class="explanation" id="unknown">unknown: ${esc(run.check.reason)}</p>`);
  if (failure && !linearizability) {
    const blocked = byId.get(failure.blocked);
    parts.push(
      `<h2>Booking check failed on ${esc(failure.key)}</h2>`,
      `<p class="explanation" id="explanation">${esc(failure.explanation)}</p>`,
      blocked ? `<p id="blocked-op"><b>The op the check rejects:</b> ${esc(opLine(blocked))}</p>` : "",
      `<p>In the timeline below that op is red with a black border and a dashed line.</p>`,
    );
  } else if (failure) {
    const blocked = byId.get(failure.blocked);
    parts.push(
      `<h2>Not linearizable on ${esc(failure.key)}</h2>`,
      `<p class="explanation" id="explanation">${esc(failure.explanation)}</p>`,
      blocked ? `<p id="blocked-op"><b>The op that cannot be placed:</b> ${esc(opLine(blocked))}</p>` : "",
      `<p>State after the prefix: ${esc(failure.stateAfterPrefix)}. In the timeline below the prefix's ops are outlined in blue, the failing op is red with a black border and a dashed line, and ops on other keys are faded.</p>`,
      `<details><summary>Longest linearizable prefix (${failure.prefix.length} ops, in the order linearized)</summary><ol class="prefix">`,
      ...failure.prefix.map((id) => `<li>${esc(byId.has(id) ? opLine(byId.get(id)!) : `op ${id}`)}</li>`),
      blocked ? `<li class="blocked">${esc(opLine(blocked))} — cannot be placed</li>` : "",
      `</ol></details>`,
    );
  }
  parts.push(
    `<h2>Timeline: one lane per client, one bar per op</h2>`,
    `<p class="legend"><span><i style="background:#66bb6a"></i>ok</span><span><i style="background:#ffa726"></i>failed (definite refusal)</span><span><i style="background:#bdbdbd;border:1px dashed #757575"></i>indeterminate (no answer; drawn to the end)</span><span><i style="background:#f3b7b7"></i>fault window</span>${failure ? `<span><i style="background:#d50000;border:2px solid #000"></i>${linearizability ? "cannot be linearized" : "rejected by the booking check"}</span>` : ""}</p>`,
    `<div class="scroll" id="timeline">${timelineSvg(history, run.faults, failure, { perKey: linearizability, leaders: linearizability })}</div>`,
    `<h2>Faults</h2>`,
    run.faults.length
      ? `<ol id="faults">${run.faults.map((f) => `<li>${esc(describeFault(f, linearizability))}</li>`).join("")}</ol>`
      : `<p id="faults">none</p>`,
    `<h2>Latency</h2><div class="scroll" id="latency">${latency}</div>`,
    `<h2>Throughput</h2><div class="scroll" id="throughput">${throughput}</div>`,
    `</body></html>`,
  );
  return parts.join("\n");
}
