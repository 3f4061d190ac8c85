// Owns the timeline of a run as inline SVG: one lane per client, every op a bar from its call to its
// return (ok, failed — a definite refusal — or indeterminate, drawn to the end of the run), the
// nemesis's fault windows shaded across every lane, and for a failed check the longest linearizable
// prefix and the op that cannot be placed after it marked. Drawn by hand rather than with vega: the
// bars carry classes and ids the page (and its tests) use to find the failing op.
import type { ReportFailure, ReportFault, ReportOp } from "./model.ts";
import { describeFault, describeInput, describeOutput, escapeXml, outcomeOf } from "./model.ts";

export const laneHeightPx = 16;
export const timelineWidthPx = 1400;
const gutterPx = 70;
const axisPx = 24;

/**
 * `perKey`: the failure is a per-key linearizability one (stock, bank), so ops on other keys are
 * faded; the booking checks span keys (a read of the day against a booking of a slot): nothing fades.
 */
export function timelineSvg(
  history: ReportOp[],
  faults: ReportFault[],
  failure?: ReportFailure,
  o: { perKey: boolean; leaders: boolean } = { perKey: true, leaders: true },
): string {
  const lanes = [...new Set(history.map((op) => op.client))].sort((a, b) => a - b);
  const laneOf = new Map(lanes.map((c, i) => [c, i]));
  const finite = history.flatMap((op) => (Number.isFinite(op.ret) ? [op.ret] : []));
  const t0 = Math.min(...history.map((op) => op.call), ...faults.map((f) => f.start));
  const t1 = Math.max(t0 + 1, ...finite, ...history.map((op) => op.call), ...faults.map((f) => f.end));
  const plotW = timelineWidthPx - gutterPx - 10;
  const x = (t: number) => gutterPx + ((Math.min(t, t1) - t0) / (t1 - t0)) * plotW;
  const height = axisPx + lanes.length * laneHeightPx + 10;
  const verdictWords = o.perKey ? "cannot be linearized" : "rejected by the booking check";
  const prefix = new Map((failure?.prefix ?? []).map((id, i) => [id, i + 1]));
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="${timelineWidthPx}" height="${height}" viewBox="0 0 ${timelineWidthPx} ${height}">`,
  ];
  // Time axis, one tick a second (or coarser for long runs).
  const spanS = (t1 - t0) / 1000;
  const stepS = spanS <= 30 ? 1 : spanS <= 120 ? 5 : 30;
  for (let s = Math.ceil(t0 / 1000 / stepS) * stepS; s * 1000 <= t1; s += stepS) {
    const px = x(s * 1000).toFixed(1);
    out.push(
      `<line class="tick" x1="${px}" x2="${px}" y1="${axisPx - 4}" y2="${height}" stroke="#e5e5e5"/>`,
      `<text x="${px}" y="${axisPx - 8}" font-size="10" text-anchor="middle">${s}s</text>`,
    );
  }
  for (const f of faults) {
    const w = Math.max(1, x(f.end) - x(f.start));
    out.push(
      `<rect class="fault fault-${escapeXml(f.kind)}" x="${x(f.start).toFixed(1)}" y="${axisPx}" width="${w.toFixed(1)}" height="${lanes.length * laneHeightPx}" fill="#f3b7b7" fill-opacity="0.35"><title>${escapeXml(describeFault(f, o.leaders))}</title></rect>`,
      `<text class="fault-label" x="${(x(f.start) + 3).toFixed(1)}" y="${axisPx + 10}" font-size="10" fill="#a33">${escapeXml(`${f.kind} ${f.target}`)}</text>`,
    );
  }
  for (const c of lanes) {
    const y = axisPx + laneOf.get(c)! * laneHeightPx;
    out.push(
      `<text class="lane-label" x="4" y="${y + laneHeightPx - 4}" font-size="10">client ${c}</text>`,
      `<line x1="${gutterPx}" x2="${timelineWidthPx - 10}" y1="${y + laneHeightPx}" y2="${y + laneHeightPx}" stroke="#f0f0f0"/>`,
    );
  }
  for (const op of history) {
    const outcome = outcomeOf(op);
    const y = axisPx + laneOf.get(op.client)! * laneHeightPx + 2;
    const end = Number.isFinite(op.ret) ? op.ret : t1;
    const w = Math.max(2, x(end) - x(op.call));
    const classes = ["op", outcome];
    if (failure && o.perKey && op.key !== failure.key) classes.push("other-key");
    const order = prefix.get(op.id);
    if (order !== undefined) classes.push("in-prefix");
    if (failure?.blocked === op.id) classes.push("blocked");
    const title =
      `op ${op.id} · client ${op.client} · ${op.key}: ${describeInput(op)} → ${describeOutput(op)} · ` +
      `${Math.round(op.call)}–${Number.isFinite(op.ret) ? Math.round(op.ret) : "∞"} ms` +
      (order !== undefined ? ` · #${order} of the linearizable prefix` : "") +
      (failure?.blocked === op.id ? ` · ${verdictWords.toUpperCase()}` : "");
    out.push(
      `<rect id="op-${op.id}" class="${classes.join(" ")}" data-op="${op.id}" x="${x(op.call).toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${laneHeightPx - 4}" rx="2"><title>${escapeXml(title)}</title></rect>`,
    );
  }
  if (failure) {
    const b = history.find((op) => op.id === failure.blocked);
    if (b) {
      const y = axisPx + laneOf.get(b.client)! * laneHeightPx;
      const cx = x(b.call);
      out.push(
        `<g class="blocked-marker"><line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${axisPx}" y2="${height}" stroke="#d00" stroke-dasharray="4 3"/>`,
        `<text x="${(cx + 4).toFixed(1)}" y="${Math.max(axisPx + 22, y - 2)}" font-size="11" font-weight="bold" fill="#d00">op ${b.id}: ${verdictWords}</text></g>`,
      );
    }
  }
  out.push("</svg>");
  return out.join("\n");
}
