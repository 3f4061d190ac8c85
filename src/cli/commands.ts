// Owns the list of `medisync` commands, in a module with no side effects so that tests and
// manifests checks can import it (importing main.ts would start a process).

/**
 * `prepare` creates, migrates and seeds the database once (containers run it before the services);
 * `client` drives a running system with load (src/client); `handover` makes the inventory replica on
 * this host give up leadership (the Kubernetes preStop hook, src/inventory/handover.ts); `token` mints
 * a development token with npm start's signing key (src/cli/token.ts).
 */
export const commands = [
  "gateway",
  "appointment",
  "inventory",
  "notification",
  "medication",
  "prepare",
  "supervisor",
  "client",
  "handover",
  // Makes or renews npm start's development CA and certificates in data/certs/ (compose mounts them).
  "certs",
  "token",
] as const;
export type Command = (typeof commands)[number];
