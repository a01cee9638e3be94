"""Every Prometheus metric of the service, defined once.

With several worker processes the registry runs in prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` set by ``serve``), so ``/metrics`` sums all workers.
"""

from __future__ import annotations

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
