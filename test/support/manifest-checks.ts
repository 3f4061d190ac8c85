// Owns the offline checks of deployment/: a rendered set of Kubernetes objects, or a fly.toml, is
// held against what the code reads (src/shared/config.ts names, defaults and parsers, the CLI's
// commands, the ports each service listens on). Each check returns problems as sentences, so a test
// can assert both "none for what we ship" and "this mutation is caught". What matters most here: the
// gateway has keys to check tokens with (AUTH_JWKS_URL, or AUTH_JWKS_FILE on a mounted Secret: it
// fails to start without), and no ops port (they take no token) is reachable from outside.

import { commands } from "../../src/cli/commands.ts";
import { type Config, envNames, loadConfig } from "../../src/shared/config.ts";
import { containersOf, type K8sObject } from "./kustomize.ts";

export const cliCommands: readonly string[] = commands;
const known = new Set<string>(envNames);

/** The ports a process started with `command` listens on, by role, as the code binds them. */
export function servicePorts(command: string, cfg: Config): { serve?: number; ops?: number } {
  if (command === "gateway") return { serve: cfg.PORT, ops: cfg.GATEWAY_OPS_PORT };
  if (command === "appointment") return { serve: cfg.APPOINTMENT_GRPC_PORT, ops: cfg.APPOINTMENT_OPS_PORT };
  if (command === "inventory") return { serve: cfg.INVENTORY_GRPC_PORT, ops: cfg.INVENTORY_OPS_PORT };
  if (command === "notification")
    return { serve: cfg.NOTIFICATION_GRPC_PORT, ops: cfg.NOTIFICATION_OPS_PORT };
  if (command === "medication") return { serve: cfg.MEDICATION_GRPC_PORT, ops: cfg.MEDICATION_OPS_PORT };
  return {};
}

const byKind = (objs: K8sObject[], kind: string) => objs.filter((o) => o.kind === kind);
const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  !!selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const workloads = (objs: K8sObject[]) =>
  objs.filter((o) => ["Deployment", "StatefulSet", "Job"].includes(o.kind));

/** The ports whose servers answer /readyz and /healthz: the ops port; the gateway's HTTP port too. */
export function probePorts(command: string, cfg: Config): number[] {
  const { serve, ops } = servicePorts(command, cfg);
  return [
    ...(command === "gateway" && serve !== undefined ? [serve] : []),
    ...(ops !== undefined ? [ops] : []),
  ];
}

/** The pod names a workload's pods get (fieldRef metadata.name): a StatefulSet's are ordinal. */
function podNames(w: K8sObject): string[] {
  if (w.kind === "StatefulSet")
    return Array.from({ length: w.spec.replicas ?? 1 }, (_, i) => `${w.metadata.name}-${i}`);
  return [`${w.metadata.name}-7d9f8-abcde`];
}

// biome-ignore lint/suspicious/noExplicitAny: container specs are plain YAML
function containerEnv(objs: K8sObject[], c: any, podName: string, problems: string[], where: string) {
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const kind = from.configMapRef ? "ConfigMap" : "Secret";
    const src = objs.find((o) => o.kind === kind && o.metadata.name === ref?.name);
    if (!src) {
      problems.push(`${where}: envFrom ${kind} ${ref?.name} does not exist`);
      continue;
    }
    const data = { ...(src.data ?? {}), ...(src.stringData ?? {}) } as Record<string, string>;
    if (kind === "Secret" && src.data) {
      for (const [k, v] of Object.entries(src.data as Record<string, string>))
        data[k] = Buffer.from(v, "base64").toString();
    }
    for (const [k, v] of Object.entries(data)) {
      if (!known.has(k))
        problems.push(`${where}: ${kind} ${ref.name} key ${k} is not a variable of src/shared/config.ts`);
      env[k] = String(v);
    }
  }
  for (const e of c.env ?? []) {
    if (!known.has(e.name))
      problems.push(`${where}: env ${e.name} is not a variable of src/shared/config.ts`);
    // $(NAME) expands to a variable defined before it, as the kubelet does.
    if (e.value !== undefined)
      env[e.name] = String(e.value).replace(/\$\(([A-Z0-9_]+)\)/g, (m, n: string) => env[n] ?? m);
    else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[e.name] = podName;
    else problems.push(`${where}: env ${e.name} comes from something these checks cannot resolve`);
  }
  return env;
}

// biome-ignore lint/suspicious/noExplicitAny: container specs are plain YAML
function portNumber(c: any, port: string | number): number | undefined {
  if (typeof port === "number") return port;
  return c.ports?.find((p: { name?: string }) => p.name === port)?.containerPort;
}

/** Every problem found in a rendered overlay; [] when it agrees with the code. */
export function checkKubernetes(objs: K8sObject[]): string[] {
  const problems: string[] = [];
  const configs = new Map<string, { cfg: Config; command: string }>();
  for (const w of workloads(objs)) {
    for (const c of containersOf(w)) {
      if (!String(c.image).includes("medisync")) continue;
      const where = `${w.kind} ${w.metadata.name}/${c.name}`;
      const command = c.args?.[0] ?? "gateway";
      if (!cliCommands.includes(command)) problems.push(`${where}: medisync has no command ${command}`);
      for (const pod of podNames(w)) {
        const env = containerEnv(objs, c, pod, problems, where);
        let cfg: Config;
        try {
          cfg = loadConfig(env);
        } catch (err) {
          problems.push(`${where} (pod ${pod}): ${(err as Error).message}`);
          continue;
        }
        configs.set(w.metadata.name, { cfg, command });
        if (command !== "prepare" && cfg.HOST !== "0.0.0.0")
          problems.push(`${where}: HOST ${cfg.HOST} is not reachable from other pods`);
        if (command === "inventory") {
          if (!cfg.INVENTORY_ID || !cfg.INVENTORY_PEERS.some((p) => p.id === cfg.INVENTORY_ID))
            problems.push(
              `${where} (pod ${pod}): INVENTORY_ID ${cfg.INVENTORY_ID} is not in INVENTORY_PEERS`,
            );
          const mount = c.volumeMounts?.find(
            (m: { mountPath: string }) => m.mountPath === cfg.INVENTORY_DATA_DIR,
          );
          const claims = (w.spec.volumeClaimTemplates ?? []).map((v: K8sObject) => v.metadata.name);
          if (!mount || !claims.includes(mount.name))
            problems.push(
              `${where}: INVENTORY_DATA_DIR ${cfg.INVENTORY_DATA_DIR} is not on a volumeClaimTemplate`,
            );
        }
        const ports = servicePorts(command, cfg);
        const expected = new Set([ports.serve, ports.ops].filter((p) => p !== undefined));
        const declared = new Set((c.ports ?? []).map((p: { containerPort: number }) => p.containerPort));
        for (const p of expected)
          if (!declared.has(p)) problems.push(`${where}: listens on ${p}, which no containerPort declares`);
        for (const p of declared)
          if (!expected.has(p as number))
            problems.push(`${where}: containerPort ${p} is a port ${command} does not listen on`);
        for (const probe of ["readinessProbe", "livenessProbe"] as const) {
          const get = c[probe]?.httpGet;
          if (command === "prepare") continue;
          if (!get) {
            problems.push(`${where}: no ${probe}`);
            continue;
          }
          if (!probePorts(command, cfg).includes(portNumber(c, get.port) ?? -1))
            problems.push(
              command === "gateway"
                ? `${where}: ${probe} port ${get.port} is neither the HTTP port ${ports.serve} nor the ops port ${ports.ops}`
                : `${where}: ${probe} port ${get.port} is not the ops port ${ports.ops}`,
            );
          const path = probe === "readinessProbe" ? "/readyz" : "/healthz";
          if (get.path !== path)
            problems.push(`${where}: ${probe} path ${get.path}, the ops server serves ${path}`);
        }
        if (!c.resources?.requests || !c.resources?.limits)
          problems.push(`${where}: no resource requests and limits`);
        const onMountedSecret = (file: string | undefined) => {
          const mount = c.volumeMounts?.find((m: { mountPath: string }) =>
            file?.startsWith(`${m.mountPath.replace(/\/$/, "")}/`),
          );
          const volume = w.spec.template.spec.volumes?.find((v: { name: string }) => v.name === mount?.name);
          return !!file && !!mount && !!volume?.secret;
        };
        // Every server and client speaks mutual TLS: its files come from a mounted Secret.
        if (command !== "prepare") {
          for (const name of ["TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"] as const) {
            if (!onMountedSecret(cfg[name]))
              problems.push(
                `${where} (pod ${pod}): ${name} ${cfg[name] ?? "unset"} is not on a mounted Secret`,
              );
          }
        }
        // The gateway reads its JWKS at start and does not start without one: an identity
        // provider's URL (over TLS: whoever swaps the keys mints tokens), or a file from a Secret.
        if (command === "gateway") {
          if (cfg.AUTH_JWKS_URL) {
            if (new URL(cfg.AUTH_JWKS_URL).protocol !== "https:")
              problems.push(`${where}: AUTH_JWKS_URL ${cfg.AUTH_JWKS_URL} is not https`);
          } else if (!onMountedSecret(cfg.AUTH_JWKS_FILE))
            problems.push(
              `${where}: no JWKS: AUTH_JWKS_URL is unset and AUTH_JWKS_FILE ${cfg.AUTH_JWKS_FILE} is not on a mounted Secret`,
            );
        }
      }
    }
  }
  // Services route to a port the selected pods declare.
  const pods = workloads(objs).map((w) => ({
    w,
    labels: w.spec.template.metadata.labels,
    containers: containersOf(w),
  }));
  for (const s of byKind(objs, "Service")) {
    const selected = pods.filter((p) => matches(s.spec.selector, p.labels));
    if (selected.length === 0) problems.push(`Service ${s.metadata.name}: selects no pods`);
    for (const sp of s.spec.ports ?? []) {
      const target = sp.targetPort ?? sp.port;
      for (const p of selected) {
        if (
          !p.containers.some(
            (c) =>
              portNumber(c, target) !== undefined &&
              (c.ports ?? []).some(
                (x: { containerPort: number }) => x.containerPort === portNumber(c, target),
              ),
          )
        )
          problems.push(
            `Service ${s.metadata.name}: targetPort ${target} is not a port of ${p.w.metadata.name}`,
          );
        else if (
          typeof target === "string" &&
          p.containers.every((c) => portNumber(c, target) !== sp.port) &&
          s.spec.clusterIP === "None"
        )
          problems.push(
            `Service ${s.metadata.name}: headless, so clients dial the pod port, but port ${sp.port} is not it`,
          );
      }
    }
  }
  // Outside the cluster: a LoadBalancer or NodePort Service publishes its ports. It must carry the
  // gateway's HTTP port, and never an ops port (/metrics, /ops: no token there).
  const opsPortOf = (w: K8sObject) => {
    const e = configs.get(w.metadata.name);
    return e ? servicePorts(e.command, e.cfg).ops : undefined;
  };
  const published = byKind(objs, "Service").filter((s) => ["LoadBalancer", "NodePort"].includes(s.spec.type));
  for (const s of published) {
    for (const sp of s.spec.ports ?? []) {
      for (const p of pods.filter((x) => matches(s.spec.selector, x.labels))) {
        const ops = opsPortOf(p.w);
        if (ops !== undefined && p.containers.some((c) => portNumber(c, sp.targetPort ?? sp.port) === ops))
          problems.push(
            `Service ${s.metadata.name} (${s.spec.type}): publishes the ops port ${ops} of ${p.w.metadata.name}`,
          );
      }
    }
  }
  for (const [name, { cfg, command }] of configs) {
    if (command !== "gateway") continue;
    const w = workloads(objs).find((x) => x.metadata.name === name)!;
    const reaches = byKind(objs, "Service").some(
      (s) =>
        matches(s.spec.selector, w.spec.template.metadata.labels) &&
        (s.spec.ports ?? []).some((sp: { port: number; targetPort?: string | number }) =>
          containersOf(w).some((c) => portNumber(c, sp.targetPort ?? sp.port) === cfg.PORT),
        ),
    );
    if (!reaches) problems.push(`${w.kind} ${name}: no Service routes to its HTTP port ${cfg.PORT}`);
  }
  // The addresses the config names resolve to Services with those ports.
  for (const [name, { cfg, command }] of configs) {
    const dial = [
      ...(command === "gateway" ? cfg.APPOINTMENT_ADDRS : []),
      ...(command === "gateway" || command === "inventory" ? cfg.INVENTORY_PEERS.map((p) => p.address) : []),
    ];
    for (const addr of dial) {
      const [host, port] = addr.split(":") as [string, string];
      const parts = host.split(".");
      const svcName = parts.length > 1 ? parts[1]! : parts[0]!;
      const svc = byKind(objs, "Service").find((s) => s.metadata.name === svcName);
      if (!svc) problems.push(`${name}: dials ${addr}, but there is no Service ${svcName}`);
      else if (!(svc.spec.ports ?? []).some((p: { port: number }) => p.port === Number(port)))
        problems.push(`${name}: dials ${addr}, but Service ${svcName} has no port ${port}`);
      if (parts.length > 1) {
        const sts = byKind(objs, "StatefulSet").find((s) => s.spec.serviceName === svcName);
        const ordinal = sts ? /^(.*)-(\d+)$/.exec(parts[0]!) : null;
        if (
          !sts ||
          !ordinal ||
          ordinal[1] !== sts.metadata.name ||
          Number(ordinal[2]) >= (sts.spec.replicas ?? 1)
        )
          problems.push(`${name}: dials ${addr}, which is no pod of a StatefulSet under Service ${svcName}`);
      }
    }
  }
  // The inventory StatefulSet: as many replicas as peers, stable names, headless peer service, a PDB of a majority.
  for (const sts of byKind(objs, "StatefulSet")) {
    const entry = configs.get(sts.metadata.name);
    if (entry?.command !== "inventory") continue;
    const peers = entry.cfg.INVENTORY_PEERS;
    const n = sts.spec.replicas ?? 1;
    if (peers.length !== n)
      problems.push(
        `StatefulSet ${sts.metadata.name}: ${n} replicas, but INVENTORY_PEERS lists ${peers.length}`,
      );
    peers.forEach((p, i) => {
      const want = `${sts.metadata.name}-${i}.${sts.spec.serviceName}:${entry.cfg.INVENTORY_GRPC_PORT}`;
      if (p.id !== `${sts.metadata.name}-${i}` || p.address !== want)
        problems.push(
          `INVENTORY_PEERS entry ${p.id}=${p.address}: pod ${i} is ${sts.metadata.name}-${i}=${want}`,
        );
    });
    const peerSvc = byKind(objs, "Service").find((s) => s.metadata.name === sts.spec.serviceName);
    if (peerSvc?.spec.clusterIP !== "None" || peerSvc?.spec.publishNotReadyAddresses !== true)
      problems.push(
        `Service ${sts.spec.serviceName}: the peer Service must be headless and publishNotReadyAddresses`,
      );
    if (sts.spec.podManagementPolicy !== "Parallel")
      problems.push(
        `StatefulSet ${sts.metadata.name}: OrderedReady would wait for a pod that needs a quorum to be ready`,
      );
    const pdb = byKind(objs, "PodDisruptionBudget").find((p) =>
      matches(p.spec.selector?.matchLabels, sts.spec.template.metadata.labels),
    );
    if (pdb?.spec.minAvailable !== Math.floor(n / 2) + 1)
      problems.push(
        `StatefulSet ${sts.metadata.name}: needs a PodDisruptionBudget of minAvailable ${Math.floor(n / 2) + 1}`,
      );
  }
  // NetworkPolicies: default deny, and every port they open is one the selected pods listen on.
  const policies = byKind(objs, "NetworkPolicy");
  if (!policies.some((p) => Object.keys(p.spec.podSelector ?? {}).length === 0 && !p.spec.ingress))
    problems.push("no default-deny ingress NetworkPolicy");
  for (const np of policies) {
    const selected = pods.filter(
      (p) =>
        Object.keys(np.spec.podSelector ?? {}).length === 0 ||
        matches(np.spec.podSelector.matchLabels, p.labels),
    );
    for (const rule of np.spec.ingress ?? []) {
      // A rule without `from` admits anyone, so it must not open an ops port (without `ports`: all).
      if (!rule.from) {
        for (const p of selected) {
          const ops = opsPortOf(p.w);
          if (ops !== undefined && (!rule.ports || rule.ports.some((x: { port: number }) => x.port === ops)))
            problems.push(
              `NetworkPolicy ${np.metadata.name}: opens the ops port ${ops} of ${p.w.metadata.name} to anyone`,
            );
        }
      }
      for (const { port } of rule.ports ?? []) {
        if (
          !selected.some((p) =>
            p.containers.some((c) =>
              (c.ports ?? []).some((x: { containerPort: number }) => x.containerPort === port),
            ),
          )
        )
          problems.push(
            `NetworkPolicy ${np.metadata.name}: opens port ${port}, on which no selected pod listens`,
          );
      }
    }
  }
  return problems;
}
