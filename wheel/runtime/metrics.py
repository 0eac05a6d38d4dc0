"""Prometheus metrics of every role (the names are documented in the
README; dashboards and alert rules depend on them).

Counters and histograms live in the process' default registry and cost a
lock and an add on the hot path. Gauges that describe the deployment as
a whole (backlog, dead letters, ...) are read from Redis at scrape time
by :mod:`wheel.api.gauges`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TIMERS_CREATED = Counter(
    "timer_wheel_timers_created_total",
    "Timers created by this API process.",
)
TIMERS_CANCELLED = Counter(
    "timer_wheel_timers_cancelled_total",
    "Timers cancelled through this API process.",
)
WEBHOOK_ATTEMPTS = Counter(
    "timer_wheel_webhook_attempts_total",
    "Webhook attempts by outcome: ok (2xx), retry (failed, retried "
    "later), fail (failed for good: dead-lettered).",
    ["outcome"],
)
for _outcome in ("ok", "retry", "fail"):
    WEBHOOK_ATTEMPTS.labels(_outcome)
DEFERRED = Counter(
    "timer_wheel_webhooks_deferred_total",
    "Webhooks put off because their host had WHEEL_HOST_CONCURRENCY in "
    "flight (no attempt counted).",
)
UNREPLICATED_WRITES = Counter(
    "timer_wheel_unreplicated_writes_total",
    "Writes that ran on the Redis master but were not confirmed by "
    "WHEEL_REPLICA_ACKS replicas in time, by operation (complete: done, "
    "counted; a failover before the replicas catch up may send that "
    "webhook again).",
    ["op"],
)
UNREPLICATED_WRITES.labels("complete")
DEGRADED_PRIMARIES = Gauge(
    "timer_wheel_degraded_primaries",
    "Redis primaries with fewer healthy replicas than WHEEL_REPLICA_ACKS, "
    "at the last /readyz (creates on them answer 503 with their id).",
    multiprocess_mode="max",
)
FIRE_LATENESS = Histogram(
    "timer_wheel_fire_lateness_seconds",
    "Start of a timer's first webhook attempt minus its due time.",
    buckets=(
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
        300,
        900,
        3600,
    ),
)
WEBHOOK_DURATION = Histogram(
    "timer_wheel_webhook_duration_seconds",
    "Time from sending a webhook to its answer (or error).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TIMERS_MOVED = Counter(
    "timer_wheel_timers_moved_total",
    "Due timers a ticker moved from the wheel into ready streams.",
)
REQUEST_DURATION = Histogram(
    "timer_wheel_http_request_duration_seconds",
    "API request duration by route and status class.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
