// Owns /docs: a self-contained page that renders /openapi.json without fetching anything from the
// internet (clinics run closed networks), listing each operation, its parameters and responses.
export const docsPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MediSync API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1d2433}
h1{margin-bottom:0}.op{border:1px solid #d5dae3;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.get{color:#1266c4}.post{color:#16853b}code,pre{background:#f3f5f8;border-radius:4px;padding:0 .25rem}
pre{padding:.5rem;overflow:auto}table{border-collapse:collapse}td,th{text-align:left;padding:.15rem .6rem .15rem 0}
</style></head><body>
<h1>MediSync API</h1><p>Generated from <a href="/openapi.json">/openapi.json</a>. Errors are
<code>application/problem+json</code>.</p><div id="ops">Loading…</div>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
fetch("/openapi.json").then((r) => r.json()).then((spec) => {
  const out = [];
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map((p) => "<tr><td><code>" + esc(p.name) + "</code></td><td>" + esc(p.in) + "</td><td>" + (p.required ? "required" : "optional") + "</td></tr>").join("");
      const body = op.requestBody ? "<p>Body:</p><pre>" + esc(JSON.stringify(op.requestBody.content["application/json"].schema, null, 2)) + "</pre>" : "";
      const res = Object.entries(op.responses).map(([code, r]) => "<tr><td>" + esc(code) + "</td><td>" + esc(r.description) + "</td></tr>").join("");
      out.push('<div class="op"><p><span class="m ' + method + '">' + method + "</span><code>" + esc(path) + "</code> " + esc(op.summary || "") + "</p>" + (params ? "<table>" + params + "</table>" : "") + body + "<table>" + res + "</table></div>");
    }
  }
  document.getElementById("ops").innerHTML = out.join("");
});
</script></body></html>`;
