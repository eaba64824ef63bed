#!/usr/bin/env python3
# Writes deploy/grafana/dashboards/tollgate.json, the Grafana dashboard over the metrics the
# gateway and tollgate-infer export and the ledger's finance views: edit the panels here and run
# it again (`--stdout` prints instead; tests/deploy/ checks the file matches and checks every
# query with promtool and PostgreSQL).
import json
import os
import sys
PROM = {"type": "prometheus", "uid": "tollgate-prometheus"}
PG = {"type": "postgres", "uid": "tollgate-finance"}
I = 'instance=~"$instance"'
panels = []
pid = [0]
y = [0]
def row(title):
    pid[0] += 1
    panels.append({"id": pid[0], "type": "row", "title": title, "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1
    x[0] = 0
x = [0]
def panel(title, targets, unit="short", w=8, kind="timeseries", desc=None, ds=PROM, h=8):
    pid[0] += 1
    if x[0] + w > 24:
        x[0] = 0; y[0] += h
    p = {"id": pid[0], "type": kind, "title": title, "datasource": ds,
         "gridPos": {"h": h, "w": w, "x": x[0], "y": y[0]},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {}, "targets": []}
    if desc: p["description"] = desc
    for i, t in enumerate(targets):
        ref = chr(ord('A') + i)
        if ds is PROM:
            expr, legend = t
            p["targets"].append({"datasource": ds, "refId": ref, "expr": expr,
                                 "legendFormat": legend, "range": kind != "table",
                                 "instant": kind == "table"})
        else:
            sql, fmt = t
            p["targets"].append({"datasource": ds, "refId": ref, "rawQuery": True,
                                 "editorMode": "code", "format": fmt, "rawSql": sql})
    if kind == "table" and ds is PROM:
        p["transformations"] = [{"id": "labelsToFields", "options": {}}]
    panels.append(p)
    x[0] += w
    if x[0] >= 24:
        x[0] = 0; y[0] += h

def nl():
    if x[0]:
        x[0] = 0; y[0] += 8

row("Traffic")
panel("Requests per second by route",
      [(f'sum by (route) (rate(tollgate_http_requests_total{{listener="api",{I}}}[$__rate_interval]))', "{{route}}")], "reqps")
panel("Responses per second by status",
      [(f'sum by (status) (rate(tollgate_http_requests_total{{listener="api",{I}}}[$__rate_interval]))', "{{status}}")], "reqps")
panel("Share of 5xx responses",
      [(f'sum(rate(tollgate_http_requests_total{{listener="api",status=~"5..",{I}}}[$__rate_interval])) / sum(rate(tollgate_http_requests_total{{listener="api",{I}}}[$__rate_interval]))', "5xx")],
      "percentunit", desc="Alert TollgateHigh5xxRate fires above 1% for 5 minutes.")
panel("Open client connections by gateway",
      [(f'sum by (instance) (tollgate_http_connections_active{{listener="api",{I}}})', "{{instance}}")])
panel("Connections refused at max_connections",
      [(f'sum by (instance) (rate(tollgate_http_connections_rejected_total{{{I}}}[$__rate_interval]))', "{{instance}}")], "cps")
panel("API key checks by outcome, and where they were answered",
      [(f'sum by (outcome) (rate(tollgate_auth_total{{{I}}}[$__rate_interval]))', "{{outcome}}"),
       (f'sum by (result) (rate(tollgate_auth_lookups_total{{{I}}}[$__rate_interval]))', "lookup {{result}}")], "ops")

row("Latency")
panel("Request duration (api listener)",
      [(f'histogram_quantile({q}, sum by (le) (rate(tollgate_http_request_duration_seconds_bucket{{listener="api",{I}}}[$__rate_interval])))', f"p{int(q*100)}")
       for q in (0.5, 0.95, 0.99)], "s")
panel("Requests answered within 10 s (latency SLO: 99%)",
      [(f'sum(rate(tollgate_http_request_duration_seconds_bucket{{listener="api",le="10",{I}}}[$__rate_interval])) / sum(rate(tollgate_http_request_duration_seconds_count{{listener="api",{I}}}[$__rate_interval]))', "within 10 s")],
      "percentunit", desc="The SLO of the TollgateLatencySLO* burn-rate alerts.")
panel("Time to first token (streams), p95 by upstream",
      [(f'histogram_quantile(0.95, sum by (upstream, le) (rate(tollgate_upstream_time_to_first_token_seconds_bucket{{{I}}}[$__rate_interval])))', "{{upstream}}")], "s")

row("Tokens and spend")
panel("Tokens per second by model and class",
      [(f'sum by (model, class) (rate(tollgate_tokens_total{{{I}}}[$__rate_interval]))', "{{model}} {{class}}")], "short", w=12)
panel("Tokens in the time range by model",
      [(f'sum by (model) (increase(tollgate_tokens_total{{{I}}}[$__range]))', "{{model}}")], "short", w=12, kind="bargauge")
TF = "$__timeFilter(e.occurred_at)"
panel("Spend and tokens per tenant (ledger, top 20)",
      [(f"""SELECT t.name AS tenant, e.tenant_id::text AS tenant_id, count(*) AS requests,
       sum(e.prompt_tokens + e.completion_tokens) AS tokens,
       sum(e.cost_micros) AS spend_micros
FROM finance.usage_events e JOIN finance.tenants t ON t.id = e.tenant_id
WHERE {TF}
GROUP BY t.name, e.tenant_id
ORDER BY spend_micros DESC NULLS LAST, tokens DESC
LIMIT 20""", "table")], "short", w=12, kind="table", ds=PG,
      desc="From the finance views of the ledger (PostgreSQL, role tollgate_finance); spend in micro-units of the tenant's plan currency.")
panel("Spend per model over time (ledger)",
      [(f"""SELECT $__timeGroupAlias(e.occurred_at, '1h'), e.model AS metric,
       sum(e.cost_micros) AS spend_micros
FROM finance.usage_events e
WHERE {TF}
GROUP BY 1, 2
ORDER BY 1""", "time_series")], "short", w=12, ds=PG,
      desc="Micro-units of each tenant's plan currency, summed; from the ledger.")
panel("Usage records handed to the ledger",
      [(f'sum(rate(tollgate_usage_records_total{{{I}}}[$__rate_interval]))', "records/s"),
       (f'sum(rate(tollgate_usage_unreported_total{{{I}}}[$__rate_interval]))', "upstream reported no usage (estimated)")], "ops")
panel("Client disconnects mid-response",
      [(f'sum(rate(tollgate_client_disconnects_total{{{I}}}[$__rate_interval]))', "disconnects/s")], "ops")
panel("Batch lines by outcome",
      [(f'sum by (outcome) (rate(tollgate_batch_lines_total{{{I}}}[$__rate_interval]))', "{{outcome}}")], "ops")

row("Budgets")
panel("Reservations by outcome",
      [(f'sum by (outcome) (rate(tollgate_budget_reservations_total{{{I}}}[$__rate_interval]))', "{{outcome}}")], "ops",
      desc="unavailable: Redis could not be reached (alert TollgateRedisUnreachable).")
panel("Settlements by outcome",
      [(f'sum by (outcome) (rate(tollgate_budget_settlements_total{{{I}}}[$__rate_interval]))', "{{outcome}}")], "ops")
panel("Spend corrections and alert webhooks",
      [(f'sum by (outcome) (rate(tollgate_budget_spend_corrections_total{{{I}}}[$__rate_interval]))', "correction {{outcome}}"),
       (f'sum by (outcome) (rate(tollgate_budget_alerts_total{{{I}}}[$__rate_interval]))', "webhook {{outcome}}")], "ops")
panel("Budget leases by event",
      [(f'sum by (event) (rate(tollgate_budget_leases_total{{{I}}}[$__rate_interval]))', "{{event}}")], "ops",
      desc="leased: a slice taken; exact: a one-request lease; recalled: given back early; "
           "flush_failed: a flush Redis did not answer, sent again (alert TollgateBudgetLeaseFlushFailures); "
           "flush_repeated: one sent again that Redis had applied already (not applied twice).")

row("Ledger")
panel("Events queued for the next flush",
      [(f'sum by (instance) (tollgate_ledger_queue_events{{{I}}})', "{{instance}}"),
       (f'sum by (instance) (tollgate_ledger_memory_only_events{{{I}}})', "{{instance}} memory only")])
panel("Journal and spool on disk",
      [(f'sum by (instance) (tollgate_ledger_spool_bytes{{{I}}})', "{{instance}}"),
       (f'max by (instance) (tollgate_ledger_spool_full{{{I}}})', "{{instance}} full")], "bytes")
panel("Events written and replayed",
      [(f'sum(rate(tollgate_ledger_events_written_total{{{I}}}[$__rate_interval]))', "written"),
       (f'sum(rate(tollgate_ledger_events_replayed_total{{{I}}}[$__rate_interval]))', "replayed from the spool")], "ops")
panel("Flush duration p99",
      [(f'histogram_quantile(0.99, sum by (le) (rate(tollgate_ledger_flush_duration_seconds_bucket{{{I}}}[$__rate_interval])))', "p99")], "s")
panel("Ledger failures by stage",
      [(f'sum by (stage) (rate(tollgate_ledger_failures_total{{{I}}}[$__rate_interval]))', "{{stage}}"),
       (f'sum(increase(tollgate_ledger_segments_quarantined_total{{{I}}}[$__rate_interval]))', "segments quarantined"),
       (f'sum(rate(tollgate_usage_rollup_failures_total{{{I}}}[$__rate_interval]))', "rollup failures"),
       (f'sum(rate(tollgate_usage_log_write_failures_total{{{I}}}[$__rate_interval]))', "usage log write failures")], "ops")

row("Upstream health")
panel("Endpoints taking traffic",
      [(f'min by (upstream, endpoint) (tollgate_upstream_endpoint_healthy{{{I}}})', "{{upstream}} {{endpoint}}")], "short", kind="table")
panel("Requests in flight per endpoint",
      [(f'max by (upstream, endpoint) (tollgate_upstream_endpoint_in_flight{{{I}}})', "{{upstream}} {{endpoint}}")])
panel("Failed attempts per endpoint",
      [(f'sum by (upstream, endpoint) (rate(tollgate_upstream_endpoint_failures_total{{{I}}}[$__rate_interval])) / sum by (upstream, endpoint) (rate(tollgate_upstream_endpoint_attempts_total{{{I}}}[$__rate_interval]))', "{{upstream}} {{endpoint}}")], "percentunit")
panel("Upstream requests by outcome",
      [(f'sum by (upstream, outcome) (rate(tollgate_upstream_requests_total{{{I}}}[$__rate_interval]))', "{{upstream}} {{outcome}}")], "reqps")
panel("Retries, ejections, health checks",
      [(f'sum by (upstream, reason) (rate(tollgate_upstream_retries_total{{{I}}}[$__rate_interval]))', "retry {{upstream}} {{reason}}"),
       (f'sum by (upstream) (rate(tollgate_upstream_retry_budget_exhausted_total{{{I}}}[$__rate_interval]))', "retry budget spent {{upstream}}"),
       (f'sum by (upstream, endpoint) (increase(tollgate_upstream_endpoint_ejections_total{{{I}}}[$__rate_interval]))', "ejected {{endpoint}}"),
       (f'sum by (upstream, endpoint, result) (rate(tollgate_upstream_endpoint_health_checks_total{{{I}}}[$__rate_interval]))', "check {{endpoint}} {{result}}")], "ops")
panel("Concurrency-cap refusals and TLS handshakes",
      [(f'sum by (upstream, reason) (rate(tollgate_upstream_queue_rejections_total{{{I}}}[$__rate_interval]))', "refused {{upstream}} {{reason}}"),
       (f'sum by (upstream, resumed) (rate(tollgate_upstream_tls_handshakes_total{{{I}}}[$__rate_interval]))', "TLS {{upstream}} resumed={{resumed}}")], "ops")

panel("Virtual model routing and fallbacks",
      [(f'sum by (model, rule, target) (rate(tollgate_routing_decisions_total{{{I}}}[$__rate_interval]))',
        "{{model}} {{rule}} -> {{target}}"),
       (f'sum by (from, to, reason) (rate(tollgate_model_fallbacks_total{{{I}}}[$__rate_interval]))',
        "fallback {{from}} -> {{to}} ({{reason}})")], "reqps", w=24)

row("Bundled engine (tollgate-infer)")
panel("Sequences running and queued",
      [('sum by (instance) (tollgate_infer_sequences_running)', "{{instance}} running"),
       ('sum by (instance) (tollgate_infer_sequences_queued)', "{{instance}} queued")])
panel("KV cache blocks in use",
      [('sum by (instance) (tollgate_infer_kv_blocks_in_use) / sum by (instance) (tollgate_infer_kv_blocks_total)', "{{instance}}")], "percentunit")
panel("Engine tokens per second",
      [('sum(rate(tollgate_infer_prompt_tokens_total[$__rate_interval]))', "prompt"),
       ('sum(rate(tollgate_infer_prompt_tokens_cached_total[$__rate_interval]))', "prompt, from the prefix cache"),
       ('sum(rate(tollgate_infer_generated_tokens_total[$__rate_interval]))', "generated")], "short")
panel("Prefix cache: blocks kept and evicted",
      [('sum by (instance) (tollgate_infer_kv_blocks_cached)', "{{instance}} cached"),
       ('sum by (instance) (rate(tollgate_infer_kv_blocks_evicted_total[$__rate_interval]))', "{{instance}} evicted/s")], "short")

dash = {
  "uid": "tollgate-overview", "title": "Tollgate", "tags": ["tollgate"],
  "schemaVersion": 39, "version": 1, "editable": True, "timezone": "utc",
  "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
  "description": "Tollgate gateways, ledger, budgets, upstreams and the bundled engine.",
  "templating": {"list": [
    {"name": "instance", "label": "gateway", "type": "query", "datasource": PROM,
     "query": {"query": "label_values(tollgate_build_info, instance)", "refId": "instance"},
     "definition": "label_values(tollgate_build_info, instance)",
     "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
     "current": {"text": "All", "value": "$__all"}}]},
  "annotations": {"list": []},
  "panels": panels,
}
text = json.dumps(dash, indent=2) + "\n"
if "--stdout" in sys.argv[1:]:
    sys.stdout.write(text)
else:
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "grafana",
                       "dashboards", "tollgate.json")
    with open(out, "w") as f:
        f.write(text)
