// Owns the client's command line: every flag, its default and its check, and the small JSON
// scenario file (--scenario) whose keys the flags override. Anything wrong is a UsageError naming
// the flag (exit 2).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { z } from "zod";
import { loadConfig } from "../shared/config.ts";
import { inventoryLimits, isCalendarDate } from "../shared/validation.ts";
import type { LoadModel, Stage } from "./load.ts";
import { checkMix, defaultMix, type Mix, parseMix } from "./mix.ts";
import { UsageError } from "./usage-error.ts";

export interface ClientOptions {
  protocol: "rest" | "grpc";
  target: URL;
  appointmentAddrs: string[];
  inventoryPeers: { id: string; address: string }[];
  medicationAddrs: string[];
  mix: Mix;
  load: LoadModel;
  timeoutMs: number;
  /** First day browsed (YYYY-MM-DD) and how many days from it. */
  from: string;
  days: number;
  inventoryClinics: string[];
  medications: string[];
  json: boolean;
  out: string | undefined;
  /** REST only: where the bearer tokens come from. */
  auth: ClientAuth;
  /** REST, minted tokens: requests one simulated patient makes before the next patient takes over. */
  requestsPerPatient: number;
}

/**
 * A token given (--token or MEDISYNC_TOKEN, from a real identity provider), or development tokens
 * minted with the signing key beside the gateway's JWKS file (npm start makes it under data/auth/).
 */
export type ClientAuth =
  | { kind: "given"; token: string; flag: "--token" | "MEDISYNC_TOKEN" }
  | { kind: "minted"; jwksFile: string; issuer: string; audience: string };

export const usage = `usage: medisync client [flags]      (npm run client -- [flags])

Drives MediSync with a clinic's traffic and prints latency per scenario.

  --target URL              gateway (default http://127.0.0.1:8080)
  --grpc                    straight to the services over gRPC instead of REST
  --appointment-addrs LIST  appointment gRPC host:port list (default: APPOINTMENT_ADDRS)
  --inventory-peers LIST    inventory replicas as id=host:port list (default: INVENTORY_PEERS)
  --medication-addrs LIST   medication gRPC host:port list (default: MEDICATION_ADDRS)
  --mix LIST                scenario weights, e.g. browse=70,book=20,cancel=10,prescribe=5
                            scenarios: browse book cancel prescribe restock transfer deduct
                            (prescribe: for an appointment the run booked, a medication its
                            clinic's stock list shows, as a clinician of that clinic)
  --scenario FILE           JSON: {"mix":{"browse":70,...},"rate":50,"stages":"10s:50,20s:100",
                            "vus":4,"duration":"30s"}; flags override it
  --rate N                  open model: N arrivals per second (default 10)
  --stages LIST             open model, stepped: duration:rate,... e.g. 10s:50,20s:100
  --vus N                   closed model: N virtual users, each waits for its answer
  --duration D              run time, e.g. 30s, 2m, 500ms (default 10s; not with --stages)
  --in-flight-max N         open model: outstanding requests at most; arrivals beyond are
                            dropped and counted (default 512)
  --timeout-ms N            per request (default 5000)
  --token JWT               REST: send this token (a real identity provider's) on every request
                            (default: MEDISYNC_TOKEN; unset, the client mints development tokens
                            with npm start's key beside AUTH_JWKS_FILE: one per simulated patient,
                            a pharmacist's for the stock scenarios, a clinician's per clinic for
                            prescribing, an admin's for setup)
  --requests-per-patient N  REST, minted tokens: requests each simulated patient makes before a
                            new one takes over (default half of RATE_LIMIT_PATIENT_PER_MINUTE, so
                            no patient meets the gateway's 429; above that limit, patients do)
  --from DATE               first day browsed, YYYY-MM-DD (default tomorrow, UTC)
  --days N                  days browsed from --from (default 7)
  --inventory-clinics LIST  clinic codes for stock writes (default harbour,riverside)
  --medications LIST        medication codes for stock writes (default amoxicillin-500mg,
                            ibuprofen-200mg: two of npm start's demo stock)
  --json                    print the summary as JSON instead of the table
  --out FILE                also write the JSON summary to FILE
  --help
`;

const durationPattern = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/;
const unitMs: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const durationMaxMs = 24 * 3_600_000;
const rateMax = 1_000_000;
const vusMax = 10_000;
const inFlightMaxLimit = 100_000;
const { codeMax } = inventoryLimits;
const codePattern = new RegExp(`^[A-Za-z0-9_.:-]{1,${codeMax}}$`);

export function parseDuration(s: string, flag: string): number {
  const m = durationPattern.exec(s.trim());
  const ms = m ? Number(m[1]) * unitMs[m[2]!]! : Number.NaN;
  if (!m || !(ms > 0) || ms > durationMaxMs) {
    throw new UsageError(flag, `"${s}" is not a duration like 500ms, 30s, 2m (up to 24h)`);
  }
  return Math.round(ms);
}

function parseNumber(s: string, flag: string, min: number, max: number, integer: boolean): number {
  const n = Number(s);
  if (s.trim() === "" || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(flag, `"${s}" must be ${integer ? "an integer" : "a number"} from ${min} to ${max}`);
  }
  return n;
}

/** `10s:50,20s:100` → stages. */
export function parseStages(s: string, flag = "--stages"): Stage[] {
  const stages: Stage[] = [];
  for (const part of s.split(",")) {
    const item = part.trim();
    if (item === "") continue;
    const [d, r, extra] = item.split(":");
    if (d === undefined || r === undefined || extra !== undefined) {
      throw new UsageError(flag, `"${item}" is not duration:rate (e.g. 10s:50)`);
    }
    stages.push({
      durationMs: parseDuration(d, flag),
      ratePerSecond: parseNumber(r, flag, 0, rateMax, false),
    });
  }
  if (stages.length === 0) throw new UsageError(flag, "no stage given");
  if (!stages.some((x) => x.ratePerSecond > 0)) throw new UsageError(flag, "every stage has rate 0");
  return stages;
}

const list = (s: string, flag: string, pattern: RegExp, what: string): string[] => {
  const xs = s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  if (xs.length === 0) throw new UsageError(flag, "the list is empty");
  for (const x of xs) if (!pattern.test(x)) throw new UsageError(flag, `"${x}" is not ${what}`);
  return xs;
};

const ScenarioFile = z.strictObject({
  mix: z.record(z.string(), z.number()).optional(),
  rate: z.number().optional(),
  stages: z.string().optional(),
  vus: z.number().optional(),
  duration: z.string().optional(),
});

function readScenarioFile(file: string): z.infer<typeof ScenarioFile> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError("--scenario", `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? err})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UsageError("--scenario", `${file} is not valid JSON`);
  }
  const parsed = ScenarioFile.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join(".") : "(top level)";
    throw new UsageError("--scenario", `${file}: ${where}: ${issue.message}`);
  }
  return parsed.data;
}

const tomorrowUtc = (now = Date.now()) => new Date(now + 86_400_000).toISOString().slice(0, 10);

/** Parses argv (after `client`); returns "help" for --help. */
export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): ClientOptions | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    const s = { type: "string" } as const;
    const b = { type: "boolean" } as const;
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        target: s,
        grpc: b,
        "appointment-addrs": s,
        "inventory-peers": s,
        "medication-addrs": s,
        mix: s,
        scenario: s,
        rate: s,
        stages: s,
        vus: s,
        duration: s,
        "in-flight-max": s,
        "timeout-ms": s,
        token: s,
        "requests-per-patient": s,
        from: s,
        days: s,
        "inventory-clinics": s,
        medications: s,
        json: b,
        out: s,
        help: b,
      },
    }));
  } catch (err) {
    // node's own message names the flag ("Unknown option '--rat'").
    throw new UsageError("flags", `${(err as Error).message.split("\n")[0]} (see --help)`);
  }
  if (values.help) return "help";
  const str = (k: string) => values[k] as string | undefined;

  const file = str("scenario") ? readScenarioFile(str("scenario")!) : {};

  let mix: Mix = defaultMix;
  if (str("mix") !== undefined) mix = parseMix(str("mix")!);
  else if (file.mix) mix = checkMix(Object.entries(file.mix), "--scenario mix");

  const rate = str("rate") ?? (file.rate !== undefined ? String(file.rate) : undefined);
  const stages = str("stages") ?? file.stages;
  const vus = str("vus") ?? (file.vus !== undefined ? String(file.vus) : undefined);
  const duration = str("duration") ?? file.duration;
  const given = [
    rate !== undefined && "--rate",
    stages !== undefined && "--stages",
    vus !== undefined && "--vus",
  ];
  const models = given.filter((x): x is string => typeof x === "string");
  if (models.length > 1) throw new UsageError(models.join(" and "), "choose one load model");
  if (stages !== undefined && duration !== undefined) {
    throw new UsageError("--duration", "not with --stages: each stage has its own duration");
  }
  const durationMs = duration !== undefined ? parseDuration(duration, "--duration") : 10_000;
  const inFlightMax =
    str("in-flight-max") !== undefined
      ? parseNumber(str("in-flight-max")!, "--in-flight-max", 1, inFlightMaxLimit, true)
      : 512;
  let load: LoadModel;
  if (vus !== undefined) {
    load = { kind: "closed", vus: parseNumber(vus, "--vus", 1, vusMax, true), durationMs };
  } else if (stages !== undefined) {
    load = { kind: "open", stages: parseStages(stages), inFlightMax };
  } else {
    const r = rate !== undefined ? parseNumber(rate, "--rate", 0.01, rateMax, false) : 10;
    load = { kind: "open", stages: [{ durationMs, ratePerSecond: r }], inFlightMax };
  }

  let target: URL;
  try {
    target = new URL(str("target") ?? "http://127.0.0.1:8080");
  } catch {
    throw new UsageError("--target", `"${str("target")}" is not a URL like http://127.0.0.1:8080`);
  }
  if (target.protocol !== "http:" && target.protocol !== "https:") {
    throw new UsageError("--target", `"${str("target")}" must be http:// or https://`);
  }

  // The services' own configuration gives the gRPC defaults, so a system started with custom
  // ports from the same environment is found without flags.
  let cfg: ReturnType<typeof loadConfig> | undefined;
  const service = () => {
    try {
      cfg ??= loadConfig(env);
      return cfg;
    } catch (err) {
      throw new UsageError("environment", (err as Error).message);
    }
  };
  const appointmentAddrs = str("appointment-addrs")
    ? list(str("appointment-addrs")!, "--appointment-addrs", /^[^\s:,]+:\d{1,5}$/, "host:port")
    : service().APPOINTMENT_ADDRS;
  const inventoryPeers = str("inventory-peers")
    ? list(
        str("inventory-peers")!,
        "--inventory-peers",
        /^[a-z0-9-]{1,32}=[^\s:=,]+:\d{1,5}$/,
        "id=host:port",
      ).map((x) => {
        const [id, address] = x.split("=") as [string, string];
        return { id, address };
      })
    : service().INVENTORY_PEERS;

  const medicationAddrs = str("medication-addrs")
    ? list(str("medication-addrs")!, "--medication-addrs", /^[^\s:,]+:\d{1,5}$/, "host:port")
    : service().MEDICATION_ADDRS;

  let auth: ClientAuth;
  const token = str("token");
  if (token !== undefined) auth = { kind: "given", token, flag: "--token" };
  else if (!values.grpc && service().MEDISYNC_TOKEN)
    auth = { kind: "given", token: service().MEDISYNC_TOKEN!, flag: "MEDISYNC_TOKEN" };
  else {
    const c = values.grpc ? undefined : service();
    if (c?.AUTH_JWKS_URL) {
      throw new UsageError(
        "--token",
        "AUTH_JWKS_URL is set: the gateway trusts that identity provider, so pass one of its tokens (--token or MEDISYNC_TOKEN)",
      );
    }
    auth = {
      kind: "minted",
      jwksFile: c?.AUTH_JWKS_FILE ?? "",
      issuer: c?.AUTH_ISSUER ?? "",
      audience: c?.AUTH_AUDIENCE ?? "",
    };
  }
  if (token !== undefined && values.grpc)
    throw new UsageError("--token", "not with --grpc: the services take a client certificate, not a token");
  const requestsPerPatient =
    str("requests-per-patient") !== undefined
      ? parseNumber(str("requests-per-patient")!, "--requests-per-patient", 2, 100_000_000, true)
      : values.grpc
        ? 0
        : Math.max(2, Math.floor(service().RATE_LIMIT_PATIENT_PER_MINUTE / 2));

  const from = str("from") ?? tomorrowUtc();
  if (!isCalendarDate(from)) throw new UsageError("--from", `"${from}" is not a date YYYY-MM-DD`);
  const days = str("days") !== undefined ? parseNumber(str("days")!, "--days", 1, 366, true) : 7;

  return {
    protocol: values.grpc ? "grpc" : "rest",
    target,
    appointmentAddrs,
    inventoryPeers,
    medicationAddrs,
    mix,
    load,
    timeoutMs:
      str("timeout-ms") !== undefined
        ? parseNumber(str("timeout-ms")!, "--timeout-ms", 1, 600_000, true)
        : 5_000,
    from,
    days,
    inventoryClinics: str("inventory-clinics")
      ? list(str("inventory-clinics")!, "--inventory-clinics", codePattern, "a clinic code")
      : ["harbour", "riverside"],
    medications: str("medications")
      ? list(str("medications")!, "--medications", codePattern, "a medication code")
      : // Two of the demo stock's codes (src/cli/seed-stock.ts), so a run against npm start deducts
        // and transfers what is there rather than meeting 409 insufficient-stock.
        ["amoxicillin-500mg", "ibuprofen-200mg"],
    json: values.json === true,
    out: str("out"),
    auth,
    requestsPerPatient,
  };
}
