// Owns the /ops dashboard's routes: the page and its script (plain HTML and a small script, no
// build step), the current snapshot as JSON, and live updates over Server-Sent Events. They live on
// the gateway's ops port (server.ts), which compose and the manifests never publish: the page is
// for the cluster's operators, and a browser's EventSource cannot send a bearer token. A gateway
// that is closing ends every open stream first, so the dashboards do not hold its drain open.
import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { opsPage, opsScript } from "./ops-page.ts";
import type { OpsState } from "./ops-state.ts";

export function addOpsRoutes(app: Hono, state: OpsState): { close(): void } {
  const open = new Set<() => void>();
  // Not in the OpenAPI document's routes: a page for people, and a stream.
  app.get("/ops", (c) =>
    c.html(opsPage, 200, {
      "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
    }),
  );
  app.get("/ops/ops.js", (c) => c.body(opsScript, 200, { "content-type": "text/javascript; charset=utf-8" }));
  app.get("/ops/state", async (c) => c.json(await state.snapshot(), 200));
  app.get("/ops/events", (c) =>
    streamSSE(c, async (stream) => {
      let finish = () => {};
      const finished = new Promise<void>((resolve) => {
        finish = resolve;
      });
      open.add(finish);
      const unwatch = state.watch((s) => {
        void stream.writeSSE({ event: "snapshot", data: JSON.stringify(s) }).catch(finish);
      });
      stream.onAbort(finish);
      try {
        await stream.writeSSE({ event: "snapshot", data: JSON.stringify(await state.snapshot()) });
        await finished;
      } finally {
        unwatch();
        open.delete(finish);
      }
    }),
  );
  return {
    close() {
      for (const f of [...open]) f();
      state.stop();
    },
  };
}
