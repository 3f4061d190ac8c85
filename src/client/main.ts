// Owns `medisync client`: parse the flags, check the system answers, learn its clinics, the free
// slots of the days browsed and (to prescribe) those clinics' stock, run the load, and print the table (or JSON). Bad flags, a
// target that is not up and a gateway that refuses the client's tokens (401/403, before or during
// the run) end in one line on stderr and exit code 2.
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { loadConfig } from "../shared/config.ts";
import { ensureDevKeys } from "../shared/dev-tokens.ts";
import { createLogger } from "../shared/logger.ts";
import { loadTransportSecurity } from "../shared/tls.ts";
import type { Backend } from "./backend.ts";
import { GrpcBackend } from "./grpc.ts";
import { GivenIdentity, type Identity, MintedIdentity } from "./identity.ts";
import { type LoadCounts, lateThresholdMs, runClosed, runOpen, totalDurationMs } from "./load.ts";
import { picker, type ScenarioName } from "./mix.ts";
import { type ClientOptions, parseOptions, usage } from "./options.ts";
import { startProgress } from "./progress.ts";
import { RestBackend } from "./rest.ts";
import { type ScenarioContext, Scenarios } from "./scenarios.ts";
import { formatTable, Recorder } from "./stats.ts";
import { AuthRefusedError, TargetDownError, UsageError, usageExitCode } from "./usage-error.ts";

const appointmentScenarios: ScenarioName[] = ["browse", "book", "cancel", "prescribe"];
const inventoryScenarios: ScenarioName[] = ["restock", "transfer", "deduct"];
/** How long a clinic's stock list is asked for through 5xx (an election), and the pause between. */
const stockListRetryMs = 10_000;
const stockListPauseMs = 200;
/** The days browsed once before the run, so booking has free slots from the first second. */
const warmupDaysMax = 200;

function datesFrom(first: string, count: number): string[] {
  const t = Date.parse(`${first}T00:00:00Z`);
  return Array.from({ length: count }, (_, i) => new Date(t + i * 86_400_000).toISOString().slice(0, 10));
}

/** Minted tokens outlive the run by this much (a run stopped late, the last answers). */
const tokenSlackS = 3_600;

/** Who the REST requests are sent as (identity.ts); refuses a mix the given token's role cannot run. */
function identityOf(o: ClientOptions): Identity {
  const used = Object.keys(o.mix).filter((n) => (o.mix[n as ScenarioName] ?? 0) > 0);
  if (o.auth.kind === "given") {
    const given = new GivenIdentity(o.auth.token, o.auth.flag);
    given.checkMix(used);
    return given;
  }
  const { privateJwk } = ensureDevKeys(dirname(o.auth.jwksFile));
  return new MintedIdentity({
    privateJwk,
    issuer: o.auth.issuer,
    audience: o.auth.audience,
    ttlS: Math.ceil(totalDurationMs(o.load) / 1_000) + tokenSlackS,
    requestsPerPatient: o.requestsPerPatient,
    stockClinics: o.inventoryClinics,
  });
}

function backendOf(o: ClientOptions, identity: Identity | undefined): Backend {
  if (o.protocol === "grpc") {
    // A `client` certificate from TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE (npm start makes
    // data/certs/client.*); without them plaintext, which only loopback services accept.
    const security = loadTransportSecurity(
      {
        ...loadConfig(),
        INVENTORY_PEERS: o.inventoryPeers,
        APPOINTMENT_ADDRS: o.appointmentAddrs,
        MEDICATION_ADDRS: o.medicationAddrs,
      },
      createLogger({ service: "client", level: "silent" }),
      { service: "client" },
    );
    return new GrpcBackend(
      {
        appointmentAddrs: o.appointmentAddrs,
        inventoryPeers: o.inventoryPeers,
        medicationAddrs: o.medicationAddrs,
      },
      o.timeoutMs,
      security,
    );
  }
  const connections = o.load.kind === "closed" ? o.load.vus : o.load.inFlightMax;
  return new RestBackend(o.target, connections, o.timeoutMs, identity!);
}

async function prepare(
  o: ClientOptions,
  backend: Backend,
  identity: Identity | undefined,
): Promise<ScenarioContext> {
  const uses = (names: ScenarioName[]) => names.some((n) => (o.mix[n] ?? 0) > 0);
  const days: ScenarioContext["days"] = [];
  const clinicStock: ScenarioContext["clinicStock"] = new Map();
  if (uses(appointmentScenarios)) {
    await backend.probeAppointments();
    const clinics = await backend.listClinics();
    if (!clinics.value) {
      throw new TargetDownError(
        `${backend.describe} did not list the clinics (${clinics.outcome.status || clinics.outcome.code})`,
      );
    }
    if (clinics.value.length === 0) {
      throw new TargetDownError(`${backend.describe} has no clinics: seed it (npm start seeds a demo)`);
    }
    // A staff token scoped to clinics books only there: browse only those.
    const scope = identity?.clinicScope;
    const mine = scope ? clinics.value.filter((c) => scope.includes(c.code)) : clinics.value;
    if (mine.length === 0) {
      throw new UsageError(
        "--token",
        `the token is scoped to clinics ${scope!.join(", ")}, none of which the gateway lists`,
      );
    }
    for (const c of mine) {
      for (const date of datesFrom(o.from, o.days)) days.push({ clinicId: c.id, clinicCode: c.code, date });
    }
    if (uses(["prescribe"])) {
      await backend.probeMedication();
      // What each clinic has to prescribe from: its own stock list, read once (its clinician's read).
      // A clinic the gateway does not know yet (404: added since its last read of the directory)
      // has nothing to prescribe from: its prescriptions are skipped.
      for (const c of mine) {
        // Asked again through 5xx and no answer for a while: an election under way.
        const deadline = Date.now() + stockListRetryMs;
        let r = await backend.listStock(c.code);
        while ((r.outcome.kind === "5xx" || r.outcome.kind === "error") && Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, stockListPauseMs));
          r = await backend.listStock(c.code);
        }
        if (r.outcome.refusal) throw new AuthRefusedError(r.outcome.refusal);
        if (r.outcome.status === 404 && r.outcome.code === "CLINIC_NOT_FOUND") continue;
        if (!r.value) {
          throw new TargetDownError(
            `${backend.describe} did not list clinic ${c.code}'s stock (${r.outcome.code ?? r.outcome.status}): start the inventory replicas, or leave prescribe out of the mix`,
          );
        }
        clinicStock.set(
          c.code,
          new Map(r.value.filter((l) => l.usable > 0).map((l) => [l.medicationCode, l.usable])),
        );
      }
    }
  }
  if (uses(inventoryScenarios)) await backend.probeInventory(o.inventoryClinics[0]!);
  return {
    backend,
    days,
    clinicStock,
    inventory: { clinics: o.inventoryClinics, medications: o.medications },
    // Over gRPC no token: each booking for a new patient id, as before tokens.
    patient: identity ? (n) => identity.patient(n) : async () => ({ id: randomUUID() }),
  };
}

/** Runs the client; resolves with the process exit code. */
export async function runClient(argv: string[]): Promise<number> {
  let backend: Backend | undefined;
  try {
    const o = parseOptions(argv);
    if (o === "help") {
      process.stdout.write(usage);
      return 0;
    }
    const identity = o.protocol === "rest" ? identityOf(o) : undefined;
    backend = backendOf(o, identity);
    const ctx = await prepare(o, backend, identity);
    const scenarios = new Scenarios(ctx);
    // Browse every day once (not counted), so booking has found slots from the first second.
    if (ctx.days.length > 0 && (o.mix.book ?? 0) > 0) {
      for (const day of ctx.days.slice(0, warmupDaysMax)) {
        const o = await scenarios.browse(day);
        if (o.refusal) throw new AuthRefusedError(o.refusal);
      }
    }
    /** The first 401/403 of the run: it stops the run, and is the run's one line of output. */
    let refusal: string | undefined;

    const recorder = new Recorder();
    const next = picker(o.mix);
    const hooks = {
      next,
      dropped: (s: ScenarioName) => recorder.drop(s),
      run: async (s: ScenarioName, intendedAt: number, sentAt: number) => {
        const r = await scenarios.run(s);
        const doneAt = performance.now();
        if (r === "skipped") {
          recorder.skip(s);
          // Nothing was sent: yield, so a closed-model user with nothing to do cannot spin.
          await new Promise((res) => setImmediate(res));
        } else {
          recorder.record(s, r, doneAt - intendedAt, doneAt - sentAt);
          if (r.refusal) refusal ??= r.refusal;
        }
      },
    };
    let stopping = false;
    const onSigint = () => {
      stopping = true;
    };
    process.once("SIGINT", onSigint);
    const durationMs = totalDurationMs(o.load);
    const progress = o.json ? { stop() {} } : startProgress(recorder, durationMs);
    const startedAt = new Date();
    let counts: LoadCounts;
    try {
      counts =
        o.load.kind === "open"
          ? await runOpen(o.load.stages, o.load.inFlightMax, hooks, undefined, () => stopping || !!refusal)
          : await runClosed(o.load.vus, o.load.durationMs, hooks, undefined, () => stopping || !!refusal);
    } finally {
      progress.stop();
      process.off("SIGINT", onSigint);
    }
    if (refusal) throw new AuthRefusedError(refusal);
    const { scenarios: perScenario, total } = recorder.summaries();
    const summary = {
      protocol: o.protocol,
      target: o.protocol === "rest" ? o.target.origin : backend.describe,
      startedAt: startedAt.toISOString(),
      model:
        o.load.kind === "open"
          ? { kind: "open", stages: o.load.stages, inFlightMax: o.load.inFlightMax }
          : { kind: "closed", vus: o.load.vus, durationMs: o.load.durationMs },
      mix: o.mix,
      elapsedMs: Math.round(counts.elapsedMs),
      interrupted: stopping,
      // The runner hands every arrival to a scenario; one with nothing to act on sends nothing.
      load: {
        ...counts,
        sent: counts.sent - total.skipped,
        skipped: total.skipped,
        elapsedMs: Math.round(counts.elapsedMs),
        lateThresholdMs,
      },
      throughputPerSecond:
        counts.elapsedMs > 0 ? Math.round((total.count / counts.elapsedMs) * 10_000) / 10 : 0,
      scenarios: perScenario,
      total,
      inventory: { stockDelta: Object.fromEntries(scenarios.stockDelta) },
      appointments: {
        bookedNotCancelled: scenarios.booked.size + scenarios.prescribed,
        prescribed: scenarios.prescribed,
        freeSlotsKnown: scenarios.freeSlots.size,
      },
      auth: identity
        ? {
            tokens: identity.describe,
            patients: identity.patientsMade,
            requestsPerPatient: o.requestsPerPatient,
          }
        : { tokens: "none (gRPC: the client certificate)" },
    };
    const json = `${JSON.stringify(summary, null, 2)}\n`;
    if (o.out) writeFileSync(o.out, json);
    if (o.json) process.stdout.write(json);
    else {
      const l = summary.load;
      process.stdout.write(
        `${formatTable(perScenario, total)}\n\n` +
          `${summary.protocol} ${summary.target}: ${total.count} requests in ${(l.elapsedMs / 1_000).toFixed(1)} s ` +
          `(${summary.throughputPerSecond}/s); arrivals ${l.intended}, sent ${l.sent}, skipped ${l.skipped}, dropped ${l.dropped}, ` +
          `late >${lateThresholdMs} ms ${l.late}, in flight at most ${l.inFlightPeak}. ` +
          `Latency from each request's intended start.\n`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof UsageError || err instanceof TargetDownError || err instanceof AuthRefusedError) {
      process.stderr.write(`medisync client: ${err.message}\n`);
      return usageExitCode;
    }
    process.stderr.write(`medisync client: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  } finally {
    await backend?.close();
  }
}
