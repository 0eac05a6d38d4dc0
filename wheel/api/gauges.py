"""Fleet gauges for Prometheus, read from Redis when ``/metrics`` is
scraped (the API serves them; tickers and workers serve only their own
counters, so no series is reported twice)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from wheel.api.fleet import Fleet


class FleetGauges(Collector):
    """Gauges of the last :class:`~wheel.api.fleet.Fleet` read."""

    def __init__(self) -> None:
        self.fleet: Fleet | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges (none before the first read)."""
        fleet = self.fleet
        if fleet is None:
            return
        simple = {
            "timer_wheel_pending_timers": (
                "Timers created and not finished yet.",
                fleet.unfinished,
            ),
            "timer_wheel_ready_backlog": (
                "Due entries in the ready streams, read or not.",
                fleet.ready,
            ),
            "timer_wheel_in_flight_entries": (
                "Ready entries workers hold (read, not yet acked).",
                fleet.in_flight,
            ),
            "timer_wheel_oldest_overdue_seconds": (
                "Age of the oldest due timer not fired yet; 0 if none.",
                fleet.oldest_overdue_ms / 1000,
            ),
            "timer_wheel_dead_letters": (
                "Dead letters kept (about 10,000 per shard at most).",
                fleet.dead_letters,
            ),
        }
        for name, (text, value) in simple.items():
            yield GaugeMetricFamily(name, text, value=value)
        leases = GaugeMetricFamily(
            "timer_wheel_leases_held",
            "Shard leases each live ticker holds.",
            labels=["ticker"],
        )
        for ticker in fleet.tickers:
            leases.add_metric([ticker.name], ticker.shards)
        yield leases
        live = GaugeMetricFamily(
            "timer_wheel_live_processes",
            "Tickers and workers with a fresh heartbeat.",
            labels=["role"],
        )
        live.add_metric(["ticker"], len(fleet.tickers))
        live.add_metric(["worker"], len(fleet.workers))
        yield live

    def exposition(self) -> bytes:
        """The gauges in the text format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)
