// Owns the /ops page: plain HTML and one small script that opens the Server-Sent Events stream
// (/ops/events) and redraws the tables from each snapshot. Text is set with textContent, never as
// HTML, so nothing from a snapshot can run as script.

export const opsPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MediSync ops</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:1.2rem auto;max-width:1100px;padding:0 16px;color:#1d2733}
h1{font-size:1.4rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #dde3ea}
th{font-weight:600;background:#f3f6f9} .leader{font-weight:700;color:#0b6e4f} .down{color:#b42318}
#status{color:#5b6b7b} .grid{display:grid;grid-template-columns:1fr 1fr;gap:0 2rem}
</style></head><body>
<h1>MediSync operations</h1>
<div id="status">connecting…</div>
<h2>Inventory cluster</h2>
<table id="replicas"><thead><tr><th>replica</th><th>role</th><th>term</th><th>commit</th><th>applied</th><th>lag</th><th>address</th></tr></thead><tbody></tbody></table>
<div class="grid">
<div><h2>Recent leader changes</h2><table id="failovers"><thead><tr><th>when</th><th>from</th><th>to</th><th>term</th></tr></thead><tbody></tbody></table></div>
<div><h2>Slot reads by cache tier (this gateway)</h2><table id="cache"><thead><tr><th>tier</th><th>reads</th><th>share</th></tr></thead><tbody></tbody></table></div>
<div><h2>Stock below reorder level</h2><table id="lowstock"><thead><tr><th>clinic</th><th>medication</th><th>on hand</th><th>reorder at</th></tr></thead><tbody></tbody></table></div>
<div><h2>Event stream consumers</h2><table id="streams"><thead><tr><th>group</th><th>lag</th><th>pending</th></tr></thead><tbody></tbody></table><p id="dead"></p></div>
</div>
<script src="/ops/ops.js"></script>
</body></html>`;

export const opsScript = `"use strict";
function rows(id, list, cells, cls) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...list.map((item) => {
    const tr = document.createElement("tr");
    const c = cls ? cls(item) : "";
    if (c) tr.className = c;
    for (const v of cells(item)) { const td = document.createElement("td"); td.textContent = String(v); tr.append(td); }
    return tr;
  }));
}
function draw(s) {
  document.getElementById("status").textContent =
    "updated " + new Date(s.at).toLocaleTimeString() + " · leader " + (s.cluster.leaderId || "none") + " · term " + s.cluster.term;
  rows("replicas", s.cluster.replicas,
    (r) => [r.id, r.role, r.term, r.commitIndex, r.appliedIndex, r.healthy ? r.lag : "—", r.address],
    (r) => (r.role === "leader" ? "leader" : r.healthy ? "" : "down"));
  rows("failovers", s.failovers, (f) => [new Date(f.at).toLocaleTimeString(), f.from || "none", f.to || "none", f.term]);
  rows("cache", Object.keys(s.cache.tiers), (t) => [t, s.cache.tiers[t], (100 * s.cache.hitRatio[t]).toFixed(1) + " %"]);
  rows("lowstock", s.lowStock, (l) => [l.clinic, l.medicationCode, l.quantity, l.reorderLevel]);
  rows("streams", s.streams ? s.streams.groups : [], (g) => [g.name, g.lag === null ? "?" : g.lag, g.pending]);
  document.getElementById("dead").textContent = s.streams ? "dead letters: " + s.streams.deadLetters : "event stream unavailable";
}
const events = new EventSource("/ops/events");
events.addEventListener("snapshot", (e) => draw(JSON.parse(e.data)));
events.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
`;
