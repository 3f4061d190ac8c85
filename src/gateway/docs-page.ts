// Owns /docs: the OpenAPI document (/openapi.json) rendered by Swagger UI, whose files are served
// from the installed swagger-ui-dist package, never a CDN (clinics run closed networks). Swagger UI
// resolves $refs, so request bodies show their fields, examples and the problem responses.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import type { Hono } from "hono";

const require = createRequire(import.meta.url);
const distDir = path.dirname(require.resolve("swagger-ui-dist/package.json"));

/** The only files of the package /docs serves, with their types. */
const assets: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "docs-init.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
};

// The initializer is a file rather than an inline script, so the page works under a strict
// Content-Security-Policy (script-src 'self').
const init = `window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 1,
  defaultModelExpandDepth: 3,
  // The default validator is swagger.io's: no calls out of the clinic's network.
  validatorUrl: null,
});
`;

export const docsPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MediSync API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<style>body{margin:0}.intro{font:15px/1.5 system-ui,sans-serif;max-width:1460px;margin:1rem auto 0;padding:0 20px;color:#3b4151}</style>
</head><body>
<p class="intro">Errors are <code>application/problem+json</code> (RFC 9457), each with a stable
<code>code</code>. Raw document: <a href="/openapi.json">/openapi.json</a>.</p>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs-init.js"></script>
</body></html>`;

const cache = new Map<string, Uint8Array<ArrayBuffer>>();
function asset(name: string): Uint8Array<ArrayBuffer> {
  let body = cache.get(name);
  if (body === undefined) {
    body =
      name === "docs-init.js"
        ? new TextEncoder().encode(init)
        : new Uint8Array(readFileSync(path.join(distDir, name)));
    cache.set(name, body);
  }
  return body;
}

/** Serves /docs and its assets on the gateway's app. */
// biome-ignore lint/suspicious/noExplicitAny: any Hono app, whatever its variables
export function mountDocs(app: Hono<any, any, any>): void {
  app.get("/docs", (c) => c.html(docsPage));
  app.get("/docs/:file", (c) => {
    const file = c.req.param("file");
    const type = assets[file];
    if (!type) return c.notFound();
    return c.body(asset(file), 200, { "content-type": type, "cache-control": "public, max-age=3600" });
  });
}
