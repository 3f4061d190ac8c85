// Owns `medisync handover`: asks the replica on this host (INVENTORY_GRPC_PORT) to hand its
// leadership to the most caught-up voter, if it leads. The Kubernetes preStop hook runs it so the
// cluster has a new leader before the pod is even sent SIGTERM (which hands over too, server.ts).
// It never fails the hook: a replica that does not lead, or does not answer, has nothing to hand.
// It runs in the replica's pod with the replica's certificate (TLS_*), and accepts only its replica's.
import type { Logger } from "pino";
import { InventoryAdminServiceClient, InventoryServiceClient } from "../gen/medisync/v1/inventory.ts";
import type { Config } from "../shared/config.ts";
import { callUnary, clientChannelOptions } from "../shared/grpc.ts";
import { loadTransportSecurity } from "../shared/tls.ts";

/** A status answer from our own replica comes at once or not at all. */
const statusDeadlineMs = 1_000;

export async function handover(cfg: Config, log: Logger): Promise<void> {
  const address = `127.0.0.1:${cfg.INVENTORY_GRPC_PORT}`;
  let security: ReturnType<typeof loadTransportSecurity>;
  try {
    // It binds nothing: HOST is the replica's, what it dials is loopback.
    security = loadTransportSecurity({ ...cfg, HOST: "127.0.0.1" }, log, {
      service: "inventory",
      ...(cfg.INVENTORY_ID ? { id: cfg.INVENTORY_ID } : {}),
    });
  } catch (err) {
    log.warn({ err: err instanceof Error ? err.message : String(err) }, "handover: not done");
    return;
  }
  const ch = security.channel({
    service: "inventory",
    ...(cfg.INVENTORY_ID ? { id: cfg.INVENTORY_ID } : {}),
  });
  const options = { ...clientChannelOptions, ...ch.options };
  const service = new InventoryServiceClient(address, ch.credentials, options);
  const admin = new InventoryAdminServiceClient(address, ch.credentials, options);
  try {
    const st = await callUnary(service.status.bind(service), {}, statusDeadlineMs);
    if (st.role !== "leader") {
      log.info({ replica: st.id, role: st.role }, "handover: not the leader, nothing to hand over");
      return;
    }
    // The replica bounds the transfer by one election timeout; allow the call a second beyond it.
    const deadlineMs = cfg.RAFT_TICK_MS * cfg.RAFT_ELECTION_TICKS + 1_000;
    const r = await callUnary(admin.transferLeadership.bind(admin), { to: "" }, deadlineMs);
    log.info({ replica: st.id, ...r }, "handover: leadership transferred");
  } catch (err) {
    log.warn({ err: err instanceof Error ? err.message : String(err) }, "handover: not done");
  } finally {
    service.close();
    admin.close();
  }
}
