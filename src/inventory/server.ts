// Owns one inventory replica process: its Raft node (LevelDB log under INVENTORY_DATA_DIR/<id>,
// snapshots in its own PostgreSQL database), one gRPC server carrying both the stock API and the
// Raft transport, the ops server, and the Redis leader hint. With mutual TLS (src/shared/tls.ts) a
// Raft message's sender is the replica its stream's certificate names; the channel to a peer accepts
// only that peer's certificate.
import path from "node:path";
import { Server } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Message, SenderAuth } from "../../raft/index.ts";
import { addRaftTransportService, GrpcTransport, PgSnapshotStore, RaftNode } from "../../raft/index.ts";
import { OpenStreams } from "../shared/call-stream.ts";
import type { Config } from "../shared/config.ts";
import { enableFailpoints, raftFailpoints } from "../shared/failpoints.ts";
import { bindGrpc, serverOptions, shutdownGrpc } from "../shared/grpc.ts";
import { LeaderHintPublisher } from "../shared/leader-hint.ts";
import { counter, gauge, portOf, startOpsServer } from "../shared/metrics.ts";
import { ensureDatabase } from "../shared/pg.ts";
import { createRedis } from "../shared/redis.ts";
import { callerPolicies, loadTransportSecurity, type TransportSecurity } from "../shared/tls.ts";
import { ClusterAdmin, createAdminHandlers, MemberDirectory } from "./admin.ts";
import { startLowStockRelay } from "./event-relay.ts";
import { inventoryFsm, RaftInventoryReplica } from "./raft-replica.ts";
import { createInventoryHandlers } from "./service.ts";
import { InventoryStateMachine } from "./state-machine.ts";
import { guardedAdminService, guardedInventoryService } from "./wire-guard.ts";

export interface InventoryService {
  id: string;
  grpcPort: number;
  opsPort: number;
  node: RaftNode;
  sm: InventoryStateMachine;
  close(): Promise<void>;
}

/** Each replica's own snapshot database: the configured name plus _<id>. */
export function replicaDatabaseUrl(base: string, id: string): string {
  const u = new URL(base);
  u.pathname = `/${u.pathname.replace(/^\//, "")}_${id.replaceAll("-", "_")}`;
  return u.toString();
}

const raftGauge = gauge("medisync_raft_index", "Raft indexes of this replica", ["replica", "kind"]);
const loopGauge = gauge("medisync_raft_loop", "Raft node loop counters (rounds, entries, ms spent)", [
  "replica",
  "stat",
]);
const lowStock = counter("medisync_inventory_low_stock_total", "Low-stock events applied", ["replica"]);
const idsGauge = gauge(
  "medisync_inventory_idempotency_ids",
  "request ids remembered in the idempotency window (bound: INVENTORY_IDEMPOTENCY_IDS_MAX)",
  ["replica"],
);
const roleGauge = gauge("medisync_raft_is_leader", "1 while this replica leads", ["replica"]);

/** With mTLS, a Raft stream's sender is the inventory replica its certificate names; else none. */
function raftSenderAuth(security: TransportSecurity): SenderAuth | undefined {
  if (security.mode !== "mtls") return undefined;
  return {
    identify: (call) => {
      const who = security.identify(call);
      return who?.service === "inventory" ? who.id : undefined;
    },
    onRefused: (r) =>
      security.refused(r.reason === "no-identity" ? "no-identity" : "raft-sender-mismatch", {
        method: "raft",
        claimed: r.claimed || undefined,
        caller: r.identity,
      }),
  };
}

export async function startInventoryReplica(cfg: Config, log: Logger): Promise<InventoryService> {
  const id = cfg.INVENTORY_ID;
  if (!id) throw new Error("INVENTORY_ID is required for an inventory replica");
  const self = cfg.INVENTORY_PEERS.find((p) => p.id === id);
  if (!self) throw new Error(`INVENTORY_ID ${id} is not in INVENTORY_PEERS`);
  // First: a replica that may not serve (plaintext off loopback, another replica's certificate)
  // stops before it opens its log.
  const security = loadTransportSecurity(cfg, log, { service: "inventory", id });
  // Set before the node starts: it reports the configuration it opens with.
  let transport: GrpcTransport | undefined;
  const directory = new MemberDirectory(id, cfg.INVENTORY_PEERS, (peers) => transport?.setPeers(peers));

  const dbUrl = replicaDatabaseUrl(cfg.INVENTORY_DATABASE_URL, id);
  await ensureDatabase(dbUrl, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const snapshots = await PgSnapshotStore.open(dbUrl, undefined, {
    statementTimeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS,
    onIdleError: (err) => log.warn({ err: err.message }, "idle PostgreSQL client failed"),
  });
  enableFailpoints(cfg.MEDISYNC_FAILPOINTS);
  if (cfg.MEDISYNC_FAILPOINTS.length > 0) {
    log.warn(
      { failpoints: cfg.MEDISYNC_FAILPOINTS },
      "failpoints on: this replica has bugs planted on purpose",
    );
  }
  const sm = new InventoryStateMachine({
    windowMs: cfg.INVENTORY_IDEMPOTENCY_WINDOW_MS,
    idsMax: cfg.INVENTORY_IDEMPOTENCY_IDS_MAX,
  });
  const redis = createRedis({
    url: cfg.REDIS_URL,
    commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS,
    log,
    name: "leader-hint",
  });
  const hint = new LeaderHintPublisher(redis, cfg.REDIS_KEY_PREFIX, cfg.LEADER_HINT_TTL_MS, log);

  const node = new RaftNode({
    id,
    clusterId: cfg.RAFT_CLUSTER_ID,
    voters: cfg.INVENTORY_PEERS.map((p) => p.id),
    dataDir: path.join(cfg.INVENTORY_DATA_DIR, id),
    snapshots,
    fsm: inventoryFsm(sm, (e) => {
      lowStock.inc({ replica: id });
      // Every replica applies the event; the leader alone reports it, once.
      if (node.isLeader) log.warn({ event: "low_stock", ...e }, "stock below reorder level");
    }),
    log,
    tickMs: cfg.RAFT_TICK_MS,
    electionTicks: cfg.RAFT_ELECTION_TICKS,
    heartbeatTicks: 1,
    snapshotEveryEntries: cfg.RAFT_SNAPSHOT_EVERY_ENTRIES,
    snapshotCatchUpEntries: cfg.RAFT_SNAPSHOT_KEEP_ENTRIES,
    failpoints: raftFailpoints(cfg.MEDISYNC_FAILPOINTS),
    onLeaderChange: (leaderId, term, isSelf) => {
      roleGauge.set({ replica: id }, isSelf ? 1 : 0);
      hint.update(isSelf ? { id, address: directory.addressOf(id) || self.address, term } : undefined);
      log.info(
        { event: "leader_change", leaderId: leaderId || null, term, isSelf },
        "inventory leader changed",
      );
    },
    onConfChange: (conf) => {
      directory.update(conf);
      log.info({ event: "members", voters: conf.voters, learners: conf.learners }, "cluster members");
    },
    onFatal: (err) => {
      log.fatal({ err }, "raft invariant broken; exiting so nothing is corrupted");
      process.exit(70);
    },
  });
  transport = new GrpcTransport({
    selfId: id,
    onPeerUnreachable: (peer) => node.peerUnreachable(peer),
    envelope: (to) => node.envelope(to),
    channel: (peer) => security.channel({ service: "inventory", id: peer.id }),
  });
  // Until the node opens its log and reports its configuration, the environment's peers.
  transport.setPeers(cfg.INVENTORY_PEERS.filter((p) => p.id !== id));
  const replica = new RaftInventoryReplica(node, sm, directory, cfg.INVENTORY_ENTRY_COMMANDS_MAX);
  const electionTimeoutMs = cfg.RAFT_TICK_MS * cfg.RAFT_ELECTION_TICKS;
  const admin = new ClusterAdmin({ node, directory, transferWaitMs: electionTimeoutMs });

  const server = new Server({
    ...serverOptions,
    "grpc.max_receive_message_length": 32 * 1024 * 1024,
    interceptors: security.interceptors(callerPolicies.inventory),
  });
  const streams = new OpenStreams();
  server.addService(guardedInventoryService, createInventoryHandlers(replica, log, Date.now, streams));
  server.addService(guardedAdminService, createAdminHandlers(admin, log));
  addRaftTransportService<Message>(
    server,
    id,
    (from, env, ms) => node.receive(from, env, ms),
    raftSenderAuth(security),
  );
  const grpcPort = await bindGrpc(server, cfg.HOST, cfg.INVENTORY_GRPC_PORT, security.serverCredentials());
  const t = transport;
  await node.start({ send: (to, m) => t.send(to, m), hello: (to, ask) => t.hello(to, ask) });

  const relay = startLowStockRelay({
    replica,
    isLeader: () => node.isLeader,
    pending: () => sm.events,
    redis,
    stream: `${cfg.REDIS_KEY_PREFIX}events`,
    intervalMs: cfg.INVENTORY_EVENT_RELAY_INTERVAL_MS,
    log,
  });

  const metricsTimer = setInterval(() => {
    const st = node.status();
    raftGauge.set({ replica: id, kind: "term" }, st.term);
    raftGauge.set({ replica: id, kind: "commit" }, st.commit);
    raftGauge.set({ replica: id, kind: "applied" }, node.applied);
    raftGauge.set({ replica: id, kind: "last" }, st.lastIndex);
    idsGauge.set({ replica: id }, sm.rememberedIds);
    for (const [k, v] of Object.entries(node.stats)) loopGauge.set({ replica: id, stat: k }, v);
  }, 1_000);
  metricsTimer.unref();

  /** Set by close(): ops /readyz answers 503 while calls in flight drain. */
  let closing = false;
  const ops = await startOpsServer({
    host: cfg.HOST,
    port: cfg.INVENTORY_OPS_PORT,
    // Ready when the replica knows a leader: only then can it serve or redirect writes.
    ready: async () => !closing && node.leader !== "",
  });
  const opsPort = portOf(ops, cfg.INVENTORY_OPS_PORT);
  log.info({ replica: id, grpcPort, opsPort }, "inventory replica listening");

  return {
    id,
    grpcPort,
    opsPort,
    node,
    sm,
    async close() {
      closing = true;
      // A leader hands over first (the k8s preStop relies on this): the cluster gets a new leader
      // at once instead of waiting out an election timeout. Bounded by one election timeout.
      if (node.isLeader && node.status().conf.voters.length > 1) {
        await admin.transferLeadership("").then(
          (r) =>
            log.info({ event: "leadership_handed_over", ...r }, "leadership transferred before shutdown"),
          (err: unknown) =>
            log.warn(
              { err: err instanceof Error ? err.message : String(err) },
              "leadership transfer before shutdown failed",
            ),
        );
      }
      clearInterval(metricsTimer);
      await relay.stop();
      hint.stop();
      // The gateway's SubmitStream stays open while it lives: end it, or the graceful shutdown
      // below waits out its drain time for it.
      streams.drain();
      await shutdownGrpc(server, cfg.SHUTDOWN_DRAIN_MS);
      t.close();
      await node.stop();
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      await snapshots.close();
      redis.disconnect();
    },
  };
}
