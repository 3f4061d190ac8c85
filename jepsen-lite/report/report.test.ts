// The report page, rendered from a small fixed history that the checker rejects: one lane per
// client, one bar per op with its outcome's class, the fault window shaded on the timeline and in
// both plots, the failing op highlighted with the checker's explanation, and nothing fetched; and
// the same for a bank and a booking history, with the nemesis's health checks and combo shown.
import { describe, expect, it } from "vitest";
import {
  bankFixtureBlocked,
  bankFixtureHistory,
  bankFixtureRun,
  bookingFixtureBlocked,
  bookingFixtureHistory,
  bookingFixtureRun,
  fixtureBlocked,
  fixtureRun,
  fixtureHistory as history,
} from "./fixture.ts";
import { renderReport } from "./html.ts";

function countOf(html: string, needle: RegExp): number {
  return [...html.matchAll(needle)].length;
}

describe("report", () => {
  it("renders lanes, outcome classes, fault windows and the failing op", async () => {
    const run = fixtureRun();
    const check = run.check;
    expect(check.result).toBe("fail");
    expect(check.failure!.blocked).toBe(fixtureBlocked);
    const html = await renderReport(run, history);

    // One lane per client, one bar per op, classed by outcome.
    expect(countOf(html, /class="lane-label"/g)).toBe(3);
    expect(countOf(html, /<rect id="op-\d+" class="op /g)).toBe(history.length);
    const classesOf = (id: number) =>
      html.match(new RegExp(`<rect id="op-${id}" class="([^"]+)"`))![1]!.split(" ");
    expect(classesOf(0)).toContain("ok");
    expect(classesOf(1)).toContain("failed");
    expect(classesOf(3)).toContain("indeterminate");
    // Ops on the other key are faded; the prefix is marked; the failing op is highlighted.
    expect(classesOf(1)).toContain("other-key");
    for (const id of check.failure!.prefix) expect(classesOf(id)).toContain("in-prefix");
    expect(classesOf(4)).toEqual(expect.arrayContaining(["ok", "blocked"]));
    expect(countOf(html, /class="op [^"]*\bblocked\b/g)).toBe(1);
    expect(html).toContain("op 4: cannot be linearized");
    expect(html).toContain('id="blocked-op"');
    // The checker's own sentence, escaped.
    expect(check.failure!.explanation).toContain("it read 5, but the quantity was 3");
    expect(html).toContain(check.failure!.explanation);
    expect(html).toContain('<span class="verdict fail" id="verdict">fail</span>');

    // The fault window: shaded across the lanes on the timeline, from its start to its end...
    const fault = html.match(/<rect class="fault fault-partition" x="([\d.]+)" y="\d+" width="([\d.]+)"/);
    expect(fault).not.toBeNull();
    const op4 = html.match(/<rect id="op-4" class="[^"]+" data-op="4" x="([\d.]+)"/)!;
    // op 4 was called at 1200 ms, inside the window (900–1300 ms).
    const [fx, fw, ox] = [Number(fault![1]), Number(fault![2]), Number(op4[1])];
    expect(ox).toBeGreaterThan(fx);
    expect(ox).toBeLessThan(fx + fw);
    // ...and in both plots (vega-lite → SVG): a rect layer of its own.
    for (const id of ["latency", "throughput"]) {
      const svg = html.slice(html.indexOf(`<div class="scroll" id="${id}">`)).split("</div>")[0]!;
      expect(svg).toContain("<svg");
      expect(svg, id).toMatch(/class="mark-rect role-mark fault_windows_marks"/);
    }
    expect(html).toMatch(/class="mark-symbol role-mark op_latency_marks"/);
    expect(html).toMatch(/latency_percentiles_marks/);
    expect(html).toMatch(/ops_per_s_marks/);

    // Self-contained: no script, nothing loaded from anywhere.
    expect(html).not.toMatch(/<script|<link|src=|url\(/i);
  });

  it("an ok run has no highlighted op", async () => {
    const fine = history.filter((op) => op.id !== fixtureBlocked);
    const run = { ...fixtureRun(fine), faults: [] };
    expect(run.check.result).toBe("ok");
    const html = await renderReport(run, fine);
    expect(html).not.toMatch(/class="op [^"]*\bblocked\b|id="blocked-op"|cannot be linearized/);
    expect(html).toContain('<span class="verdict ok" id="verdict">ok</span>');
    expect(countOf(html, /<rect id="op-\d+"/g)).toBe(fine.length);
  });
});

describe("report of the other workloads", () => {
  const classesOf = (html: string, id: number) =>
    html.match(new RegExp(`<rect id="op-${id}" class="([^"]+)"`))![1]!.split(" ");

  it("bank: lanes of transfers and reads in their own words, the failing read, the fault's health checks", async () => {
    const run = bankFixtureRun();
    expect(run.check.result).toBe("fail");
    expect(run.check.failure!.blocked).toBe(bankFixtureBlocked);
    const html = await renderReport(run, bankFixtureHistory);
    expect(countOf(html, /class="lane-label"/g)).toBe(3);
    expect(countOf(html, /<rect id="op-\d+" class="op /g)).toBe(bankFixtureHistory.length);
    expect(classesOf(html, 1)).toContain("ok");
    expect(classesOf(html, 2)).toContain("failed");
    expect(classesOf(html, 4)).toContain("indeterminate");
    expect(classesOf(html, bankFixtureBlocked)).toEqual(expect.arrayContaining(["ok", "blocked"]));
    expect(countOf(html, /class="op [^"]*\bblocked\b/g)).toBe(1);
    // One key: nothing fades.
    expect(html).not.toMatch(/other-key"/);
    expect(html).toContain("transfer 5 from account 0 to 1 → ok, balance 15");
    expect(html).toContain("transfer 30 from account 2 to 3 → INSUFFICIENT_STOCK, available 20");
    expect(html).toContain("read account 0 → ok, balance 20");
    expect(html).toContain(`op ${bankFixtureBlocked}: cannot be linearized`);
    expect(html).toContain("Not linearizable on bank");
    // The fault with A's fields: its combo, the leader's return and both health checks.
    const faults = html.slice(html.indexOf('<ol id="faults">')).split("</ol>")[0]!;
    expect(faults).toContain("halves inv-0,inv-1 | inv-2 600–1300 ms");
    expect(faults).toContain("combo 2");
    expect(faults).toContain("leader again after 410 ms");
    expect(faults).toContain("before: leader inv-0, probe write 12 ms");
    expect(faults).toContain("after the heal: leader none, probe write not acknowledged");
    expect(html).toMatch(/<rect class="fault fault-halves"[^>]*><title>[^<]*combo 2/);
  });

  it("booking: bookings, cancels and reads with their instance, the read the checks reject, no linearizability words", async () => {
    const run = bookingFixtureRun();
    expect(run.check.result).toBe("fail");
    expect(run.check.failure!.blocked).toBe(bookingFixtureBlocked);
    const html = await renderReport(run, bookingFixtureHistory);
    expect(countOf(html, /class="lane-label"/g)).toBe(3);
    expect(countOf(html, /<rect id="op-\d+" class="op /g)).toBe(bookingFixtureHistory.length);
    expect(classesOf(html, 0)).toContain("failed");
    expect(classesOf(html, 1)).toContain("ok");
    expect(classesOf(html, 3)).toContain("indeterminate");
    expect(classesOf(html, bookingFixtureBlocked)).toEqual(expect.arrayContaining(["ok", "blocked"]));
    // The rejected read is on key "day", the failure on s1: the booking checks span keys, so nothing fades.
    expect(run.check.failure!.key).toBe("s1");
    expect(html).not.toMatch(/other-key"/);
    expect(html).toContain("book s0 → SLOT_TAKEN via instance 0");
    expect(html).toContain("book s1 → ok, appointment appt-1 via instance 1");
    expect(html).toContain("read → ok, free s1 (instance 0, tier 2)");
    expect(html).toContain("cancel s0 → no answer (UNAVAILABLE)");
    expect(html).toContain("Booking check failed on s1");
    expect(html).toContain(run.check.failure!.explanation);
    expect(html).toContain(`op ${bookingFixtureBlocked}: rejected by the booking check`);
    expect(html).not.toMatch(/cannot be linearized|linearizable prefix/i);
    // No patient id on the page; a Redis fault has no leader to speak of.
    expect(html).not.toContain("p-fixture");
    const faults = html.slice(html.indexOf('<ol id="faults">')).split("</ol>")[0]!;
    expect(faults).toContain("redis-flush redis 500–900 ms · before: probe write 9 ms");
    expect(faults).not.toMatch(/leader/);
  });
});
