// Owns the one rule every slot cache obeys, wherever it runs (the appointment service's LRU and
// Redis tiers, the gateway's tier): where a (clinic, date) slot set's version lives in Redis, and
// when a cached copy of that set may be served — only when its version equals the key's number.
// A lost or expired key, or one being re-established (a claim, "p:<token>:<n>"), lets no copy be
// served: the appointment service re-establishes it from PostgreSQL (src/appointment/slot-cache.ts
// owns writing these keys; everyone else only reads them).

/** The name of one (clinic, date) slot set, inside the keys below and the caches' maps. */
export function slotSetKey(clinicId: string, date: string): string {
  return `${clinicId}:${date}`;
}

/** The Redis key holding the version of slot set `setKey` (slotSetKey). */
export function slotVersionKey(keyPrefix: string, setKey: string): string {
  return `${keyPrefix}slots:v:${setKey}`;
}

/** The Redis key holding the appointment service's shared copy of slot set `setKey`. */
export function slotDataKey(keyPrefix: string, setKey: string): string {
  return `${keyPrefix}slots:d:${setKey}`;
}

/**
 * The version a cached copy must carry to be served, given the version key's value; undefined when
 * no cached copy may be served at all (no key, or a claim: only PostgreSQL knows what is current).
 */
export function servableSlotVersion(raw: string | null): number | undefined {
  if (raw === null || raw.startsWith("p:")) return undefined;
  const v = Number(raw);
  return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}
