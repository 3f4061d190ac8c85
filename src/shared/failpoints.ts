// Owns the failpoints: bugs planted on purpose, in the style of etcd's gofail, so the jepsen-lite
// harness can prove it catches each one (jepsen-lite/mutation.test.ts). This module holds the only
// list of their names, with what each one breaks; MEDISYNC_FAILPOINTS (src/shared/config.ts) turns
// them on by name, and an unknown name is a configuration error. All are off by default, and off
// costs one boolean read at the hook. raft/ cannot import this module, so the Raft ones reach the
// node as RaftNodeOptions.failpoints (see raftFailpoints).

/** Every failpoint, with the one sentence that says what it breaks and where. */
export const failpointDocs = {
  "read-local":
    "a linearizable read is answered from the replica's own applied state, without ReadIndex and whatever its role (src/inventory/raft-replica.ts): a deposed leader answers stale reads",
  "skip-dedup":
    "the state machine applies a command whose request id it already applied (src/inventory/state-machine.ts): a write retried across a leader change lands twice",
  "commit-without-quorum":
    "the leader counts itself as a majority when it advances the commit index (raft/core/raft.ts): a partitioned leader acknowledges writes that the rest never see",
  "ack-before-commit":
    "the leader applies and acknowledges a write once it is in its own log, before a majority has it, and sends it to followers only every fourth heartbeat (200 ms) (raft/node/node.ts, raft/core/raft.ts): killing the leader loses acknowledged writes",
} as const;

export type FailpointName = keyof typeof failpointDocs;
export const failpointNames = Object.keys(failpointDocs) as FailpointName[];

export function isFailpointName(name: string): name is FailpointName {
  return Object.hasOwn(failpointDocs, name);
}

/**
 * The failpoints of src/ as booleans, read at each hook. Set once at process start by
 * enableFailpoints (before any command is applied); never changed afterwards.
 */
export const failpoints = { readLocal: false, skipDedup: false };

/** Turns on the named failpoints of this process (the inventory replica calls it with its config). */
export function enableFailpoints(names: readonly FailpointName[]): void {
  failpoints.readLocal = names.includes("read-local");
  failpoints.skipDedup = names.includes("skip-dedup");
}

/** The Raft ones, as the node takes them (raft/node/node.ts RaftFailpoints). */
export function raftFailpoints(names: readonly FailpointName[]): {
  commitWithoutQuorum: boolean;
  ackBeforeCommit: boolean;
} {
  return {
    commitWithoutQuorum: names.includes("commit-without-quorum"),
    ackBeforeCommit: names.includes("ack-before-commit"),
  };
}

/**
 * Crashpoints: where a test may have a process kill itself (SIGKILL, no cleanup) at one step of a
 * multi-step operation, to prove that a crash at that step loses nothing (test/medication.crash.
 * test.ts). MEDISYNC_CRASHPOINTS turns them on by name; test-only, never in production. Unlike the
 * failpoints above they plant no bug: the code is the production code, it just stops there.
 */
export const crashpointDocs = {
  "medication-after-record":
    "the medication service dies after the prescription and its in-progress dispense are committed, before inventory is asked",
  "medication-after-deduct-sent":
    "the medication service dies a few milliseconds after the Deduct left for inventory, before any answer",
  "medication-before-complete":
    "the medication service dies after inventory answered the Deduct, before the dispense is marked completed or declined",
  "medication-before-returned":
    "the medication service dies after inventory answered a cancel's ReturnStock, before the return is marked done",
} as const;

export type CrashpointName = keyof typeof crashpointDocs;
export const crashpointNames = Object.keys(crashpointDocs) as CrashpointName[];

export function isCrashpointName(name: string): name is CrashpointName {
  return Object.hasOwn(crashpointDocs, name);
}

/** Kills this process at once if `name` is on: the crash a test asked for, nothing run after it. */
export function crashpoint(active: ReadonlySet<CrashpointName>, name: CrashpointName): void {
  if (active.size === 0 || !active.has(name)) return;
  process.stderr.write(`medisync: crashpoint ${name}: SIGKILL\n`);
  process.kill(process.pid, "SIGKILL");
}
