// Owns what `npm start` puts in the inventory once the services are up: every clinic of the
// appointment service (ListClinics) gets its time zone from the clinics table (setClinicTimeZone,
// so its lots expire on its own calendar), and — with SEED_DEMO on — a clinic that has no stock yet
// gets the demo stock (three medications, two lots each, expiring a few months ahead). It reaches
// the services the way any client does, over gRPC (the generated clients and the shared inventory
// client), never through their code. Each write carries a request id made from what it writes, so
// a second start, or two supervisors at once, replays instead of adding stock twice.
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { AppointmentServiceClient, type Clinic } from "../gen/medisync/v1/appointment.ts";
import type { Config } from "../shared/config.ts";
import { callUnary, clientChannelOptions } from "../shared/grpc.ts";
import { InventoryClient } from "../shared/inventory-client.ts";
import { type ClientSecurity, plaintextClients } from "../shared/tls.ts";
import type { ChildSpec } from "./supervisor.ts";

/** The demo stock of one clinic: each medication in every lot of demoLots. */
export const demoMedications = ["amoxicillin-500mg", "paracetamol-500mg", "ibuprofen-200mg"] as const;
const demoLots = [
  { lot: "demo-1", quantity: 100, expiresInMonths: 3 },
  { lot: "demo-2", quantity: 200, expiresInMonths: 6 },
] as const;

/** Everything the seed may take, retries included; past it npm start goes on without it (logged). */
const seedBudgetMs = 30_000;
/** One inventory call may outlast the first election of a cluster that has just started. */
const inventoryOverallDeadlineMs = 10_000;
const retryPauseMs = 500;

/** Where the services are: the addresses the supervisor gives its gateway child. */
export interface SeedTargets {
  appointmentAddrs: string[];
  inventoryPeers: { id: string; address: string }[];
}

/** The supervisor's children, each with the spec it was started from. */
export type Children = readonly { readonly spec: ChildSpec }[];

export function targetsOf(children: Children): SeedTargets {
  const env = children.find((c) => c.spec.command === "gateway")?.spec.env ?? {};
  const appointmentAddrs = (env.APPOINTMENT_ADDRS ?? "").split(",").filter((a) => a !== "");
  const inventoryPeers = (env.INVENTORY_PEERS ?? "")
    .split(",")
    .filter((p) => p.includes("="))
    .map((p) => {
      const i = p.indexOf("=");
      return { id: p.slice(0, i), address: p.slice(i + 1) };
    });
  return { appointmentAddrs, inventoryPeers };
}

/** `from` plus whole months, as the calendar date YYYY-MM-DD (UTC). */
export function monthsAhead(from: Date, months: number): string {
  const d = new Date(Date.UTC(from.getUTCFullYear(), from.getUTCMonth() + months, from.getUTCDate()));
  return d.toISOString().slice(0, 10);
}

/** Request ids are held to the Idempotency-Key alphabet; a zone name ("America/New_York") is not. */
const digest = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 16);

/**
 * Sets every clinic's zone and seeds the stock of those without any. Never throws: a seed that
 * cannot finish within seedBudgetMs (or while the supervisor stops) is logged, and npm start goes on.
 */
export async function seedStock(
  cfg: Config,
  children: Children,
  log: Logger,
  stopped: () => boolean = () => false,
  /** The supervisor's certificate: the services refuse a caller without one. */
  security: ClientSecurity = plaintextClients,
): Promise<void> {
  const targets = targetsOf(children);
  if (targets.appointmentAddrs.length === 0 || targets.inventoryPeers.length === 0) return;
  const ch = security.channel({ service: "appointment" });
  const appointments = targets.appointmentAddrs.map(
    (a) => new AppointmentServiceClient(a, ch.credentials, { ...clientChannelOptions, ...ch.options }),
  );
  const inventory = new InventoryClient({
    peers: targets.inventoryPeers,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    overallDeadlineMs: inventoryOverallDeadlineMs,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    security,
  });
  const deadline = Date.now() + seedBudgetMs;
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        const clinics = await listClinics(appointments, cfg.GRPC_DEADLINE_MS, attempt);
        const seeded = await Promise.all(clinics.map((c) => seedClinic(inventory, c, cfg.SEED_DEMO)));
        log.info(
          {
            event: "inventory_seeded",
            clinics: clinics.map((c) => c.code),
            stockSeeded: clinics.filter((_, i) => seeded[i]).map((c) => c.code),
          },
          "clinic time zones set in the inventory; demo stock seeded where a clinic had none",
        );
        return;
      } catch (err) {
        if (stopped() || Date.now() + retryPauseMs >= deadline) {
          log.warn(
            { event: "inventory_seed_failed", err: (err as Error).message, budgetMs: seedBudgetMs },
            "could not set the clinics' time zones and demo stock in the inventory",
          );
          return;
        }
        await new Promise((r) => setTimeout(r, retryPauseMs));
      }
    }
  } finally {
    for (const a of appointments) a.close();
    inventory.close();
  }
}

async function listClinics(
  appointments: AppointmentServiceClient[],
  deadlineMs: number,
  attempt: number,
): Promise<Clinic[]> {
  const c = appointments[attempt % appointments.length]!;
  const { clinics } = await callUnary(c.listClinics.bind(c), {}, deadlineMs);
  return clinics.filter((k) => k.code !== "");
}

/** Sets the clinic's zone; seeds its stock when `demo` and it has none. Resolves whether it seeded. */
async function seedClinic(inventory: InventoryClient, clinic: Clinic, demo: boolean): Promise<boolean> {
  const zone = inventory.write("setClinicTimeZone", {
    requestId: `seed-tz:${clinic.code}:${digest(clinic.timeZone)}`,
    clinicId: clinic.code,
    timeZone: clinic.timeZone,
  });
  if (!demo) {
    await zone;
    return false;
  }
  const { items } = await inventory.listStock(clinic.code);
  await zone;
  if (items.length > 0) return false;
  const now = new Date();
  // Issued together, so they leave in one SubmitBatch and land in one log entry as a rule. A seed
  // cut short (the supervisor stopped between batches) is not topped up later: the clinic has stock.
  await Promise.all(
    demoMedications.flatMap((medicationCode) =>
      demoLots.map((l) => {
        const expiresOn = monthsAhead(now, l.expiresInMonths);
        return inventory.write("restock", {
          requestId: `seed-stock:${clinic.code}:${medicationCode}:${l.lot}:${expiresOn}`,
          clinicId: clinic.code,
          medicationCode,
          quantity: l.quantity,
          lot: l.lot,
          expiresOn,
        });
      }),
    ),
  );
  return true;
}
