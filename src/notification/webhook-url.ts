// Owns which webhook URLs MediSync may call: http(s) only, no credentials in the URL, and a host
// that resolves to public addresses only — so a webhook cannot be pointed at loopback, the private
// network or a cloud metadata address (SSRF). The name is resolved here, and the delivery connects
// to the address this check returned (deliveries.ts), so a DNS answer that changes between the
// check and the connection (rebinding) cannot slip a private address in.
import { lookup as dnsLookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { AppError } from "../shared/errors.ts";
import { notificationLimits } from "../shared/validation.ts";

/** Addresses a webhook may not reach unless NOTIFICATION_WEBHOOK_ALLOW_PRIVATE is set. */
const refused = new BlockList();
for (const [net, bits] of [
  ["0.0.0.0", 8], // "this network", 0.0.0.0 unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata (169.254.169.254)
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const)
  refused.addSubnet(net, bits, "ipv4");
for (const [net, bits] of [
  ["::", 128], // unspecified
  ["::1", 128],
  ["64:ff9b::", 96], // NAT64: maps onto IPv4, private ones included
  ["fc00::", 7], // unique local
  ["fe80::", 10], // link-local
  ["ff00::", 8], // multicast
] as const)
  refused.addSubnet(net, bits, "ipv6");
// IPv4-mapped IPv6 (::ffff:127.0.0.1) is checked against the IPv4 rules by BlockList itself.

export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return refused.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** Checks the URL's shape (not its addresses); a VALIDATION naming `field` when it is no webhook URL. */
export function parseWebhookUrl(raw: string, field = "url"): URL {
  const bad = (why: string) => new AppError("VALIDATION", `${field} ${why}`, field);
  if (raw.length === 0 || raw.length > notificationLimits.webhookUrlMax)
    throw bad(`must be 1-${notificationLimits.webhookUrlMax} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw bad("must be an absolute http or https URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw bad("must be an http or https URL");
  if (url.username !== "" || url.password !== "") throw bad("must not carry credentials");
  if (url.hostname === "") throw bad("must name a host");
  return url;
}

export interface ResolvedTarget {
  address: string;
  family: 4 | 6;
}

export type Lookup = (host: string) => Promise<{ address: string; family: number }[]>;

const systemLookup: Lookup = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * The address to connect to for `url`: its host resolved, every address it resolves to public
 * (one private answer is enough to refuse: the connection could land on it) unless
 * `allowPrivate`. A VALIDATION naming `field` otherwise — the same error at create and at delivery.
 */
export async function resolveTarget(
  url: URL,
  allowPrivate: boolean,
  field = "url",
  lookup: Lookup = systemLookup,
): Promise<ResolvedTarget> {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  let answers: { address: string; family: number }[];
  if (isIP(host) !== 0) answers = [{ address: host, family: isIP(host) }];
  else {
    try {
      answers = await lookup(host);
    } catch (err) {
      const code = (err as { code?: string }).code ?? "lookup failed";
      throw new AppError("VALIDATION", `${field} host does not resolve (${code})`, field);
    }
  }
  const first = answers[0];
  if (!first) throw new AppError("VALIDATION", `${field} host does not resolve`, field);
  if (!allowPrivate && answers.some((a) => isPrivateAddress(a.address))) {
    throw new AppError(
      "VALIDATION",
      `${field} resolves to a loopback, private, link-local or unspecified address, which webhooks may not reach`,
      field,
    );
  }
  return { address: first.address, family: first.family === 6 ? 6 : 4 };
}
