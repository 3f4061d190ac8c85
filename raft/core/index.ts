// Owns the public surface of the pure Raft core: what drivers (the simulator, the real node) import.
export { assert, RaftInvariantError } from "./assert.ts";
export { RaftLog } from "./log.ts";
export { Progress } from "./progress.ts";
export { type RaftConfig, RaftCore, snapshotChunkBytesMaxDefault, type TestOnlyBugs } from "./raft.ts";
export { MemoryStorage, type RaftStorage } from "./storage.ts";
export * from "./types.ts";
