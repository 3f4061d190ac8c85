// Owns the shape of what an evaluation measured: what each section hands the report writer
// (report.ts), and what a test can build by hand to check the writer without running anything.
import type { SpectrumPoint } from "./histogram.ts";

/** When and how a section ran: each section of the report names them. */
export interface RunInfo {
  startedAt: string;
  command: string;
  /** The machine in one line (cpu × cores, memory, node). */
  machine: string;
}

/** "gateway": the gateway's own slot tier (src/gateway/slot-tier.ts); the rest are the service's. */
export type Tier = "gateway" | "lru" | "redis" | "db";
/** How a slot query was sent and measured. */
export type SlotPath = "gateway (HTTP)" | "straight gRPC";

export interface SlotRow {
  tier: Tier;
  path: SlotPath;
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  /** The tier that answered, from the appointment service's /metrics, e.g. "lru 100.0%". */
  servedBy: string;
}

export interface SlotSpectrum {
  tier: Tier;
  path: SlotPath;
  connections: number;
  points: SpectrumPoint[];
}

export interface SlotsResult {
  run: RunInfo;
  durationS: number;
  keys: number;
  rows: SlotRow[];
  spectra: SlotSpectrum[];
}

/** A write of the timeline trial, relative to the kill (ms; negative: before it). */
export interface TimelineWrite {
  /** Intended start. */
  atMs: number;
  /** When acknowledged. */
  ackAtMs: number;
  /** From the intended start to the acknowledgement. */
  latencyMs: number;
}

export interface FailoverSystem {
  /** "MediSync" or "etcd 3.4". */
  system: string;
  /** How the client reached it and what a write was. */
  client: string;
  /** ms from the SIGKILL to the first acknowledged write sent after the process was gone; NaN: none. */
  trialsMs: number[];
  /** Write latency outside the failover windows (steady state), ms. */
  steadyP50: number;
  steadyP99: number;
  /** One trial's writes, and how long after the kill its first write was acknowledged. */
  timeline: { failoverMs: number; writes: TimelineWrite[]; unacked: number };
}

export interface FailoverResult {
  run: RunInfo;
  ratePerSecond: number;
  systems: FailoverSystem[];
  /** Why etcd is not beside it, when it is not. */
  etcdNote?: string;
}

export interface RecoveryTrial {
  writes: number;
  /** Log entries the restarted replica was behind (leader's commit index − its applied index). */
  entriesBehind: number;
  /** From the restart until the process listened (not catching up: node, LevelDB, PostgreSQL). */
  restartMs: number;
  /** From listening until it had applied the leader's commit index at its restart. */
  catchUpMs: number;
  bySnapshot: boolean;
  /** Every replica's state hash and stock of the written medication, after convergence. */
  replicas: { id: string; appliedIndex: number; stateHash: string; stock: number }[];
  consistent: boolean;
}

export interface RecoveryResult {
  run: RunInfo;
  trials: RecoveryTrial[];
}

export interface EvictionSecond {
  /** Seconds since the load began. */
  t: number;
  phase: string;
  evictionsPerS: number;
  lruHitRatio: number;
  requestsPerS: number;
}

export interface EvictionsResult {
  run: RunInfo;
  lruEntries: number;
  phases: { name: string; keys: number; fromS: number; toS: number }[];
  seconds: EvictionSecond[];
  evictionsTotal: number;
  evictionLinesLogged: number;
  sampleLines: number;
}

export interface Evaluation {
  quick: boolean;
  machine: string;
  slots?: SlotsResult;
  failover?: FailoverResult;
  recovery?: RecoveryResult;
  evictions?: EvictionsResult;
}
