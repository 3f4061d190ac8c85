// The test SMTP server (test/support/notification.ts) under a sender that dies mid-conversation, as
// the notification service does when a test SIGKILLs it: the reset connection must not become an
// uncaught exception in the test process (a clean-clone CI run once failed on exactly that).
import net from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SmtpSink, until } from "./support/notification.ts";

const sink = new SmtpSink();
beforeAll(async () => {
  await sink.start();
});
afterAll(() => sink.close());

it("a sender that resets its connection mid-conversation is survived, and the next one is served", async () => {
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);
  process.prependListener("uncaughtException", onUncaught);
  try {
    for (let i = 0; i < 5; i++) {
      const s = net.connect(sink.port, "127.0.0.1");
      let greeted = "";
      s.on("data", (d: Buffer) => {
        greeted += d.toString();
      });
      s.on("error", () => undefined);
      await until(async () => greeted.startsWith("220"), "the greeting", 5_000);
      s.write("EHLO test\r\nMAIL FROM:<a@b.test>\r\n");
      await until(async () => greeted.includes("250"), "the EHLO answer", 5_000);
      // A SIGKILLed sender's socket: closed with RST, not FIN.
      s.resetAndDestroy();
      await new Promise<void>((resolve) => s.once("close", () => resolve()));
    }
    // The server is still there: a new conversation is greeted.
    const ok = net.connect(sink.port, "127.0.0.1");
    let text = "";
    ok.on("data", (d: Buffer) => {
      text += d.toString();
    });
    await until(async () => text.startsWith("220"), "a greeting after the resets", 5_000);
    ok.end("QUIT\r\n");
    // Give the server's own error path its turn: the reset is read on a later tick than the close.
    await until(async () => sink.connectionErrors >= 5 || uncaught.length > 0, "the resets seen", 5_000);
    expect(uncaught).toEqual([]);
  } finally {
    process.removeListener("uncaughtException", onUncaught);
  }
});
