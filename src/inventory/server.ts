// Owns one inventory replica process: its Raft node (LevelDB log under INVENTORY_DATA_DIR/<id>,
// snapshots in its own PostgreSQL database), one gRPC server carrying both the stock API and the
// Raft transport, the ops server, and the Redis leader hint.
import path from "node:path";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Message } from "../../raft/core/types.ts";
import { RaftNode } from "../../raft/node/node.ts";
import { PgSnapshotStore } from "../../raft/storage/pg-snapshots.ts";
import { addRaftTransportService, GrpcTransport } from "../../raft/transport/grpc-transport.ts";
import { InventoryServiceService } from "../gen/medisync/v1/inventory.ts";
import type { Config } from "../shared/config.ts";
import { serverOptions } from "../shared/grpc.ts";
import { LeaderHintPublisher } from "../shared/leader-hint.ts";
import { counter, gauge, startOpsServer } from "../shared/metrics.ts";
import { ensureDatabase } from "../shared/pg.ts";
import { createRedis } from "../shared/redis.ts";
import { inventoryFsm, RaftInventoryReplica } from "./raft-replica.ts";
import { createInventoryHandlers } from "./service.ts";
import { InventoryStateMachine } from "./state-machine.ts";

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
const roleGauge = gauge("medisync_raft_is_leader", "1 while this replica leads", ["replica"]);

export async function startInventoryReplica(cfg: Config, log: Logger): Promise<InventoryService> {
  const id = cfg.INVENTORY_ID;
  if (!id) throw new Error("INVENTORY_ID is required for an inventory replica");
  const self = cfg.INVENTORY_PEERS.find((p) => p.id === id);
  if (!self) throw new Error(`INVENTORY_ID ${id} is not in INVENTORY_PEERS`);

  const dbUrl = replicaDatabaseUrl(cfg.INVENTORY_DATABASE_URL, id);
  await ensureDatabase(dbUrl);
  const snapshots = await PgSnapshotStore.open(dbUrl);
  const sm = new InventoryStateMachine();
  const redis = createRedis({
    url: cfg.REDIS_URL,
    commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS,
    log,
    name: "leader-hint",
  });
  const hint = new LeaderHintPublisher(redis, cfg.REDIS_KEY_PREFIX, cfg.LEADER_HINT_TTL_MS, log);

  const node = new RaftNode({
    id,
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
    onLeaderChange: (leaderId, term, isSelf) => {
      roleGauge.set({ replica: id }, isSelf ? 1 : 0);
      hint.update(isSelf ? { id, address: self.address, term } : undefined);
      log.info(
        { event: "leader_change", leaderId: leaderId || null, term, isSelf },
        "inventory leader changed",
      );
    },
    onFatal: (err) => {
      log.fatal({ err }, "raft invariant broken; exiting so nothing is corrupted");
      process.exit(70);
    },
  });
  const transport = new GrpcTransport({
    selfId: id,
    onPeerUnreachable: (peer) => node.peerUnreachable(peer),
  });
  transport.setPeers(cfg.INVENTORY_PEERS.filter((p) => p.id !== id));
  const replica = new RaftInventoryReplica(node, sm, cfg.INVENTORY_PEERS, cfg.INVENTORY_ENTRY_COMMANDS_MAX);

  const server = new Server({ ...serverOptions, "grpc.max_receive_message_length": 32 * 1024 * 1024 });
  server.addService(InventoryServiceService, createInventoryHandlers(replica, log));
  addRaftTransportService<Message>(server, id, (_from, m) => node.deliver(m));
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${cfg.HOST}:${cfg.INVENTORY_GRPC_PORT}`,
      ServerCredentials.createInsecure(),
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  );
  await node.start({ send: (to, m) => transport.send(to, m) });

  const metricsTimer = setInterval(() => {
    const st = node.status();
    raftGauge.set({ replica: id, kind: "term" }, st.term);
    raftGauge.set({ replica: id, kind: "commit" }, st.commit);
    raftGauge.set({ replica: id, kind: "applied" }, node.applied);
    raftGauge.set({ replica: id, kind: "last" }, st.lastIndex);
    for (const [k, v] of Object.entries(node.stats)) loopGauge.set({ replica: id, stat: k }, v);
  }, 1_000);
  metricsTimer.unref();

  const ops = await startOpsServer({
    host: cfg.HOST,
    port: cfg.INVENTORY_OPS_PORT,
    // Ready when the replica knows a leader: only then can it serve or redirect writes.
    ready: async () => node.leader !== "",
  });
  const address = ops.address();
  const opsPort = typeof address === "object" && address ? address.port : cfg.INVENTORY_OPS_PORT;
  log.info({ replica: id, grpcPort, opsPort }, "inventory replica listening");

  return {
    id,
    grpcPort,
    opsPort,
    node,
    sm,
    async close() {
      clearInterval(metricsTimer);
      hint.stop();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), 2_000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      transport.close();
      await node.stop();
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      await snapshots.close();
      redis.disconnect();
    },
  };
}
