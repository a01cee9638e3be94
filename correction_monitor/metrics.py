"""Every Prometheus metric of the service, defined once.

With several worker processes the registry runs in prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` set by ``serve``), so ``/metrics`` sums all workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "cm_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "cm_http_request_seconds",
    "HTTP request latency in seconds",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
FIXES_ACCEPTED = Counter("cm_fixes_accepted_total", "Fixes durably stored", ["protocol"])
FIXES_DUPLICATE = Counter("cm_fixes_duplicate_total", "Fixes recognised as already stored")
FIXES_REJECTED = Counter("cm_fixes_rejected_total", "Fixes refused, by reason", ["reason"])
COMMIT_BATCH_SIZE = Histogram(
    "cm_commit_batch_fixes",
    "Fixes per group commit",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
COMMIT_SECONDS = Histogram(
    "cm_commit_seconds",
    "Time of one group commit (persist + evaluate) in seconds",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
INGEST_QUEUE = Gauge(
    "cm_ingest_queue_fixes", "Fixes waiting for a group commit", multiprocess_mode="livesum"
)
INGEST_OVERLOAD = Counter("cm_ingest_overload_total", "Requests refused with 503 (queue full)")
ALERTS_RAISED = Counter("cm_alerts_raised_total", "Alerts opened", ["type"])
AUDIT_WRITES = Counter("cm_audit_entries_total", "Audit log entries written", ["action"])
REDIS_ERRORS = Counter("cm_redis_errors_total", "Redis operations that failed (service degraded)")

# The alert-quality report (service/reports.py) as gauges per alert type and station
# (org_unit is a station's code, or "all" for the type's totals), over the last 30 days;
# refreshed by a periodic job. Seconds gauges are NaN when no alert got that far.
ALERT_QUALITY_FIGURES = (
    ("raised", "cm_alert_quality_raised", "Alerts raised"),
    ("self_resolved", "cm_alert_quality_self_resolved", "Alerts that ended within their grace"),
    ("confirmed", "cm_alert_quality_confirmed", "Alerts resolved as confirmed"),
    ("justified", "cm_alert_quality_justified", "Alerts resolved as justified"),
    ("false_alarm", "cm_alert_quality_false_alarm", "Alerts resolved as false alarms"),
    (
        "false_alarm_rate",
        "cm_alert_quality_false_alarm_rate",
        "False alarms among resolved alerts (NaN: none resolved)",
    ),
    ("ack_p50_s", "cm_alert_quality_ack_p50_seconds", "Median time to acknowledge"),
    ("ack_p90_s", "cm_alert_quality_ack_p90_seconds", "90th percentile time to acknowledge"),
    ("resolve_p50_s", "cm_alert_quality_resolve_p50_seconds", "Median time to resolve"),
    ("resolve_p90_s", "cm_alert_quality_resolve_p90_seconds", "90th percentile time to resolve"),
    ("sla_missed", "cm_alert_quality_sla_missed", "Alerts whose task missed its SLA"),
)
ALERT_QUALITY = {
    key: Gauge(name, f"{text} (last 30 days)", ["type", "org_unit"], multiprocess_mode="mostrecent")
    for key, name, text in ALERT_QUALITY_FIGURES
}


def set_alert_quality(type_: str, org_unit: str, figures: Mapping[str, Any] | None) -> None:
    """Set one (type, org unit) series of every alert-quality gauge; ``figures`` None zeroes
    the counts and blanks the rest (a series that dropped out of the period)."""
    for key, gauge in ALERT_QUALITY.items():
        value = None if figures is None else figures.get(key)
        if value is None:
            value = float("nan") if figures is not None or key.endswith(("_s", "_rate")) else 0.0
        gauge.labels(type=type_, org_unit=org_unit).set(value)
