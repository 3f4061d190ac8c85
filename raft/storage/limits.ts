// Owns the size limits of what the storage keeps, in a module without dependencies so that code
// sizing what it hands to a snapshot (the inventory's idempotency window) can read them cheaply.

/** Largest snapshot accepted: beyond this the state machine needs chunked storage. */
export const snapshotBytesMax = 512 * 1024 * 1024;
