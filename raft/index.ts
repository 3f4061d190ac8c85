// The Raft library's front door: everything a service needs to run a replicated state machine —
// the node (RaftNode and its seams: StateMachine, SnapshotStore, Transport, Scheduler, LogStore),
// the gRPC transport, the PostgreSQL snapshot store, the core's types and errors, and the limits a
// service must agree with. Services import from here only (raft/imports.test.ts checks it).
export type { ConfState, Message, Snapshot } from "./core/types.ts";
export { RaftError } from "./core/types.ts";
export {
  NodeError,
  type NodeLogger,
  type RaftFailpoints,
  RaftNode,
  type RaftNodeOptions,
  type SnapshotStore,
  type StateMachine,
  type Transport,
} from "./node/node.ts";
export { nodeScheduler, type Scheduler, type Timer } from "./node/scheduler.ts";
export { snapshotBytesMax } from "./storage/limits.ts";
export type { LogStore } from "./storage/log-store.ts";
export { PgSnapshotStore } from "./storage/pg-snapshots.ts";
export {
  addRaftTransportService,
  GrpcTransport,
  type ReceiveStats,
  type SenderAuth,
} from "./transport/grpc-transport.ts";
