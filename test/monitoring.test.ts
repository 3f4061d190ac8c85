// deployment/monitoring checked offline: every metric the Grafana dashboard queries is one the
// services register (the registry their /metrics serves), the Prometheus targets are the ops ports
// `npm start` binds (the gateway's too: its HTTP port serves no /metrics), and the Kubernetes
// ServiceMonitors select Services and ports that exist and reach each pod on its ops port.
import { readFileSync } from "node:fs";
import * as core from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { planChildren } from "../src/cli/supervisor.ts";
import { loadConfig } from "../src/shared/config.ts";
import { registry } from "../src/shared/metrics.ts";
import { containersOf, type K8sObject, parseManifests, renderKustomization } from "./support/kustomize.ts";
import { servicePorts } from "./support/manifest-checks.ts";

// The services' entry modules: importing them registers every metric they define, starts nothing.
await import("../src/gateway/server.ts");
await import("../src/appointment/server.ts");
await import("../src/inventory/server.ts");
await import("../src/notification/server.ts");
await import("../src/medication/server.ts");

interface Dashboard {
  panels: { title: string; targets: { expr: string }[] }[];
}
const dashboard = JSON.parse(
  readFileSync("deployment/monitoring/grafana-dashboard.json", "utf8"),
) as Dashboard;

/** Metric names a dashboard queries that no service registers, as "panel: name". */
function unknownMetrics(d: Dashboard): string[] {
  const known = new Map(registry.getMetricsAsArray().map((m) => [m.name, String(m.type)]));
  const problems: string[] = [];
  for (const p of d.panels) {
    for (const t of p.targets) {
      for (const [name] of t.expr.matchAll(/\b(?:medisync|process|nodejs)_[a-z0-9_]+\b/g)) {
        const base = name.replace(/_(bucket|sum|count)$/, "");
        const ok = known.has(name) || (base !== name && known.get(base) === "histogram");
        if (!ok) problems.push(`${p.title}: ${name}`);
      }
    }
  }
  return problems;
}

/**
 * Where the ServiceMonitors' endpoints land: each must reach a MediSync pod on the ops port its
 * config binds (the base ConfigMap's values), and every MediSync workload must be scraped there.
 */
function scrapeProblems(base: K8sObject[], extra: K8sObject[]): string[] {
  const problems: string[] = [];
  const cm = base.find((o) => o.kind === "ConfigMap" && o.metadata.name === "medisync-config")!;
  const cfg = loadConfig(cm.data);
  const matches = (labels: Record<string, string> | undefined, want: Record<string, string> | undefined) =>
    !!want && Object.entries(want).every(([k, v]) => labels?.[k] === v);
  const services = [...base, ...extra].filter((o) => o.kind === "Service");
  const workloads = base
    .filter((o) => ["Deployment", "StatefulSet"].includes(o.kind))
    .map((w) => ({ w, c: containersOf(w).find((c) => String(c.image).includes("medisync")) }))
    .filter((x) => x.c !== undefined);
  const scraped = new Set<string>();
  for (const m of extra.filter((o) => o.kind === "ServiceMonitor")) {
    for (const s of services.filter((x) => matches(x.metadata.labels, m.spec.selector.matchLabels))) {
      for (const e of m.spec.endpoints as { port: string }[]) {
        const sp = s.spec.ports.find((p: { name: string }) => p.name === e.port);
        if (!sp) continue;
        for (const { w, c } of workloads.filter((x) =>
          matches(x.w.spec.template.metadata.labels, s.spec.selector),
        )) {
          const target = sp.targetPort ?? sp.port;
          const port =
            typeof target === "number"
              ? target
              : c.ports?.find((p: { name: string }) => p.name === target)?.containerPort;
          if (port === undefined) continue; // a headless Service's named port this pod lacks
          const ops = servicePorts(c.args?.[0] ?? "gateway", cfg).ops;
          if (port !== ops)
            problems.push(
              `${m.metadata.name} scrapes ${w.metadata.name} on ${port}, not its ops port ${ops}`,
            );
          else scraped.add(w.metadata.name);
        }
      }
    }
  }
  for (const { w, c } of workloads) {
    if (!scraped.has(w.metadata.name))
      problems.push(
        `no ServiceMonitor scrapes ${w.metadata.name} on its ops port ${servicePorts(c.args?.[0] ?? "gateway", cfg).ops}`,
      );
  }
  return problems;
}

describe("monitoring", () => {
  it("every metric the Grafana dashboard queries is registered by a service", () => {
    expect(dashboard.panels.length).toBeGreaterThan(10);
    expect(unknownMetrics(dashboard)).toEqual([]);
    const names = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)).join("\n");
    // The list: request rates and latencies, cache tiers, Raft terms and commit lag, stream lag.
    for (const m of [
      "medisync_http_requests_total",
      "medisync_http_request_duration_seconds_bucket",
      "medisync_slot_cache_lookups_total",
      "medisync_raft_index",
      "medisync_notification_stream_lag",
    ]) {
      expect(names).toContain(m);
    }
  });

  it("catches a dashboard that queries a metric nobody exports", () => {
    const broken = structuredClone(dashboard);
    broken.panels[0]!.targets[0]!.expr = "rate(medisync_http_requets_total[1m])";
    expect(unknownMetrics(broken)).toEqual([`${broken.panels[0]!.title}: medisync_http_requets_total`]);
  });

  it("Prometheus scrapes exactly the ports npm start's processes serve /metrics on", () => {
    const cfg = loadConfig({});
    const expected = [
      `127.0.0.1:${cfg.GATEWAY_OPS_PORT}`,
      ...planChildren(cfg).flatMap((c) => {
        const ops =
          c.env.APPOINTMENT_OPS_PORT ??
          c.env.INVENTORY_OPS_PORT ??
          c.env.NOTIFICATION_OPS_PORT ??
          c.env.MEDICATION_OPS_PORT;
        return ops ? [`127.0.0.1:${ops}`] : [];
      }),
    ].sort();
    const prom = YAML.parse(readFileSync("deployment/monitoring/prometheus.yml", "utf8")) as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = prom.scrape_configs.flatMap((j) => j.static_configs.flatMap((s) => s.targets)).sort();
    expect(targets).toEqual(expected);
    // The gateway on its ops port, not on the HTTP port (which answers /metrics with 401 or 404).
    const gateway = prom.scrape_configs.find((j) => j.job_name === "medisync-gateway")!;
    expect(gateway.static_configs.flatMap((s) => s.targets)).toEqual([`127.0.0.1:${cfg.GATEWAY_OPS_PORT}`]);
    expect(targets).not.toContain(`127.0.0.1:${cfg.PORT}`);
  });

  it("the ServiceMonitors select Services of the base and ports those Services have", () => {
    const extra = parseManifests("deployment/monitoring/kubernetes/servicemonitor.yaml");
    const base = renderKustomization("deployment/kubernetes/base");
    const services = [...base, ...extra].filter((o) => o.kind === "Service") as (K8sObject & {
      metadata: { labels?: Record<string, string> };
      spec: { selector: Record<string, string>; ports: { name: string; targetPort: string | number }[] };
    })[];
    for (const s of extra.filter((o) => o.kind === "Service")) new core.Service(s as never).validate();
    const monitors = extra.filter((o) => o.kind === "ServiceMonitor") as (K8sObject & {
      spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] };
    })[];
    expect(monitors.length).toBe(1);
    const matches = (labels: Record<string, string> | undefined, want: Record<string, string>) =>
      Object.entries(want).every(([k, v]) => labels?.[k] === v);
    for (const m of monitors) {
      const selected = services.filter((s) => matches(s.metadata.labels, m.spec.selector.matchLabels));
      expect(selected.length, m.metadata.name).toBeGreaterThan(0);
      for (const e of m.spec.endpoints) {
        for (const s of selected)
          expect(
            s.spec.ports.map((p) => p.name),
            `${m.metadata.name} → ${s.metadata.name}`,
          ).toContain(e.port);
      }
    }
    // The headless ops Service's named target port exists on the pods it selects that serve one.
    const ops = services.find((s) => s.metadata.name === "medisync-ops")!;
    const podsWithOps = base
      .filter((o) => ["Deployment", "StatefulSet"].includes(o.kind))
      .filter((o) =>
        matches(
          (o as never as { spec: { template: { metadata: { labels: Record<string, string> } } } }).spec
            .template.metadata.labels,
          ops.spec.selector,
        ),
      )
      .filter((o) =>
        JSON.stringify((o as never as { spec: { template: unknown } }).spec.template).includes(
          '"name":"ops"',
        ),
      )
      .map((o) => o.metadata.name)
      .sort();
    expect(podsWithOps).toEqual(["appointment", "gateway", "inv", "medication", "notification"]);
    expect(scrapeProblems(base, extra)).toEqual([]);
  });

  it("catches a ServiceMonitor that scrapes the gateway on its HTTP port, or misses its ops port", () => {
    const extra = parseManifests("deployment/monitoring/kubernetes/servicemonitor.yaml");
    const base = renderKustomization("deployment/kubernetes/base");
    // The old way: the gateway's own Service, on `http`.
    const onHttp: K8sObject = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: "medisync-gateway", namespace: "medisync" },
      spec: {
        selector: { matchLabels: { "app.kubernetes.io/name": "gateway" } },
        endpoints: [{ port: "http", path: "/metrics" }],
      },
    };
    expect(scrapeProblems(base, [...extra, onHttp])).toContain(
      "medisync-gateway scrapes gateway on 8080, not its ops port 9400",
    );
    // The gateway's ops port renamed: the headless Service's targetPort `ops` no longer reaches it.
    const renamed = structuredClone(base);
    const gw = renamed.find((o) => o.kind === "Deployment" && o.metadata.name === "gateway")!;
    gw.spec.template.spec.containers[0].ports[1].name = "admin";
    expect(scrapeProblems(renamed, extra)).toContain(
      "no ServiceMonitor scrapes gateway on its ops port 9400",
    );
  });
});
