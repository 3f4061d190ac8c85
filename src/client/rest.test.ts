// The REST backend's keep-alive sockets: an idle one is closed by the client before a server with
// Node's default keep-alive timeout (5 s) closes it. Otherwise a request sent on the socket just as
// the server closes it ends in ECONNRESET: a network error the client counts although the system
// never saw the request (5 in 600 requests against npm start's gateway on a loaded machine).
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureDevKeys } from "../shared/dev-tokens.ts";
import { MintedIdentity } from "./identity.ts";
import { RestBackend } from "./rest.ts";

const dir = mkdtempSync(join(tmpdir(), "medisync-client-rest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("REST backend keep-alive", () => {
  it("closes an idle socket itself, before the server's keep-alive timeout would", async () => {
    // Who closed each connection: the client (its FIN reaches the server as "end") or the server.
    const closes: ("client" | "server")[] = [];
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ slots: [] }));
    });
    server.on("connection", (socket) => {
      let clientEnded = false;
      socket.on("end", () => {
        clientEnded = true;
      });
      socket.on("close", () => closes.push(clientEnded ? "client" : "server"));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    expect(server.keepAliveTimeout).toBe(5_000);
    const { port } = server.address() as AddressInfo;
    const identity = new MintedIdentity({
      privateJwk: ensureDevKeys(join(dir, "auth")).privateJwk,
      issuer: "iss-test",
      audience: "aud-test",
      ttlS: 600,
      requestsPerPatient: 10,
      stockClinics: [],
    });
    const backend = new RestBackend(new URL(`http://127.0.0.1:${port}`), 4, 10_000, identity);
    try {
      const r = await backend.listSlots("c-1", "2031-01-01", { id: "p-1" });
      expect(r.outcome.kind).toBe("ok");
      // The idle socket closes, by one side or the other, well within this.
      const deadline = Date.now() + 20_000;
      while (closes.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      expect(closes).toEqual(["client"]);
    } finally {
      await backend.close();
      await new Promise((r) => server.close(r));
    }
  }, 30_000);
});
