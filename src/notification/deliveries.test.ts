// The pieces of webhook delivery that need no receiver: the signature a receiver recomputes, the
// backoff's bounds, which addresses a webhook may reach (and that one private DNS answer is enough
// to refuse), the retention cross-check, and that every handled topic can be subscribed to.
import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../shared/config.ts";
import { AppError } from "../shared/errors.ts";
import { ContactCipher } from "./contacts.ts";
import { backoffMs, backoffMsLimit, signature } from "./deliveries.ts";
import { handlers, lowStockTopic } from "./handlers.ts";
import { webhookTopics } from "./service.ts";
import { isPrivateAddress, parseWebhookUrl, resolveTarget } from "./webhook-url.ts";

describe("webhook deliveries", () => {
  it("signs t.<body> with HMAC-SHA256 of the secret, as a receiver recomputes it", () => {
    const body = '{"id":"appointment:1"}';
    const header = signature("whsec_test", body, 1_900_000_000);
    const expected = createHmac("sha256", "whsec_test").update(`1900000000.${body}`).digest("hex");
    expect(header).toBe(`t=1900000000,v1=${expected}`);
    expect(signature("whsec_other", body, 1_900_000_000)).not.toBe(header);
  });

  it("backs off exponentially with full jitter, capped", () => {
    expect(backoffMs(1, 1_000, () => 0)).toBe(0);
    expect(backoffMs(1, 1_000, () => 0.999999)).toBe(999);
    expect(backoffMs(4, 1_000, () => 0.999999)).toBe(7_999);
    expect(backoffMs(40, 1_000, () => 0.5)).toBe(backoffMsLimit / 2);
    for (let i = 0; i < 100; i++) {
      const ms = backoffMs(3, 500);
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(2_000);
    }
  });

  it("refuses loopback, private, link-local and unspecified addresses, IPv4 and IPv6", () => {
    for (const a of [
      "127.0.0.1",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "169.254.169.254",
      "0.0.0.0",
      "100.64.0.1",
      "::1",
      "::",
      "fc00::1",
      "fd12:3456::1",
      "fe80::1",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "not-an-address",
    ])
      expect(isPrivateAddress(a), a).toBe(true);
    for (const a of ["8.8.8.8", "172.32.0.1", "192.169.0.1", "2606:4700:4700::1111", "1.1.1.1"])
      expect(isPrivateAddress(a), a).toBe(false);
  });

  it("checks a URL's shape, naming the field", () => {
    for (const bad of [
      "",
      "not a url",
      "ftp://example.com/",
      "file:///etc/passwd",
      "http://u:p@example.com/",
    ]) {
      expect(() => parseWebhookUrl(bad), bad).toThrow(AppError);
      try {
        parseWebhookUrl(bad);
      } catch (err) {
        expect((err as AppError).field).toBe("url");
        expect((err as AppError).code).toBe("VALIDATION");
      }
    }
    expect(parseWebhookUrl("https://hooks.example.com/x?y=1").hostname).toBe("hooks.example.com");
  });

  it("resolves before checking: a name with any private answer is refused, a literal needs no lookup", async () => {
    const lookup = (answers: string[]) => async () =>
      answers.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
    const url = new URL("https://hooks.example.com/");
    await expect(resolveTarget(url, false, "url", lookup(["93.184.216.34"]))).resolves.toEqual({
      address: "93.184.216.34",
      family: 4,
    });
    // A rebinding name answering a public and a private address: the connection could land on either.
    await expect(
      resolveTarget(url, false, "url", lookup(["93.184.216.34", "127.0.0.1"])),
    ).rejects.toMatchObject({
      code: "VALIDATION",
      field: "url",
    });
    await expect(resolveTarget(url, true, "url", lookup(["127.0.0.1"]))).resolves.toMatchObject({
      address: "127.0.0.1",
    });
    const never = async () => {
      throw new Error("no lookup for a literal");
    };
    await expect(resolveTarget(new URL("http://[::1]:8080/"), false, "url", never)).rejects.toMatchObject({
      field: "url",
    });
    await expect(resolveTarget(new URL("http://[::1]:8080/"), true, "url", never)).resolves.toEqual({
      address: "::1",
      family: 6,
    });
    const nx = async () => {
      throw Object.assign(new Error("nx"), { code: "ENOTFOUND" });
    };
    await expect(resolveTarget(url, false, "url", nx)).rejects.toMatchObject({ field: "url" });
  });

  it("the inbox must outlive the producers' outbox window (else a replay notifies twice)", () => {
    expect(() =>
      loadConfig({ OUTBOX_RETENTION_SECONDS: "86400", NOTIFICATION_INBOX_RETENTION_SECONDS: "86400" }),
    ).toThrow(ConfigError);
    try {
      loadConfig({ NOTIFICATION_INBOX_RETENTION_SECONDS: "3600" });
    } catch (err) {
      expect((err as ConfigError).variable).toBe("NOTIFICATION_INBOX_RETENTION_SECONDS");
    }
    expect(loadConfig({}).NOTIFICATION_INBOX_RETENTION_SECONDS).toBeGreaterThan(
      loadConfig({}).OUTBOX_RETENTION_SECONDS,
    );
  });

  it("webhooks may subscribe to exactly the topics the service handles", () => {
    expect([...handlers.keys()].sort()).toEqual([...webhookTopics].sort());
    expect(webhookTopics).toContain(lowStockTopic);
  });

  it("a contact is sealed with AES-256-GCM: fresh IV each time, bound to its patient, tamper-evident", () => {
    const key = Buffer.alloc(32, 7).toString("base64");
    const cipher = new ContactCipher(key);
    const a = "00000000-0000-4000-8000-000000000001";
    const b = "00000000-0000-4000-8000-000000000002";
    const one = cipher.encrypt(a, "ann@example.com");
    const two = cipher.encrypt(a, "ann@example.com");
    expect(one.equals(two)).toBe(false);
    expect(one.toString("latin1")).not.toContain("ann@example.com");
    expect(cipher.decrypt(a, one)).toBe("ann@example.com");
    expect(() => cipher.decrypt(b, one)).toThrow(); // another patient's row
    const flipped = Buffer.from(one);
    flipped[flipped.length - 1]! ^= 1;
    expect(() => cipher.decrypt(a, flipped)).toThrow();
    expect(() => new ContactCipher(Buffer.alloc(31).toString("base64"))).toThrow();
    expect(() => new ContactCipher(Buffer.alloc(32, 8).toString("base64")).decrypt(a, one)).toThrow();
  });

  it("NOTIFICATION_CONTACT_KEY must be 32 bytes of base64; SMTP_URL an smtp(s) URL", () => {
    expect(
      loadConfig({ NOTIFICATION_CONTACT_KEY: Buffer.alloc(32, 1).toString("base64") })
        .NOTIFICATION_CONTACT_KEY,
    ).toBeTruthy();
    for (const bad of [Buffer.alloc(16).toString("base64"), "not base64 at all", "x".repeat(44)]) {
      expect(() => loadConfig({ NOTIFICATION_CONTACT_KEY: bad })).toThrow(ConfigError);
    }
    expect(loadConfig({ SMTP_URL: "smtp://127.0.0.1:2525" }).SMTP_URL).toBe("smtp://127.0.0.1:2525");
    expect(() => loadConfig({ SMTP_URL: "http://127.0.0.1:2525" })).toThrow(ConfigError);
    expect(loadConfig({}).SMTP_URL).toBeUndefined();
  });
});
