"""A short fault storm: random SIGKILLs and a SIGSTOP under steady load."""

from __future__ import annotations

from pathlib import Path

from tests.storm import MIN_FAULTS, Storm
from tests.support import FAST_ENV, Procs, Receiver

STORM_ENV = {
    **FAST_ENV,
    # Above the 5 s SIGSTOP: a paused worker's claims still hold when it
    # wakes, so a pause alone never duplicates.
    "WHEEL_RECLAIM_IDLE": "8",
    "WHEEL_HEARTBEAT_TTL": "3",
}


def test_fault_storm_loses_nothing(
    redis_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """20 s at 150 creates/s with roles killed every 2-4 s and a worker
    stopped for 5 s: every timer fires; a duplicate only for a webhook
    in flight at a worker's kill."""
    procs = Procs({**STORM_ENV, "WHEEL_REDIS_URL": redis_url}, tmp_path)
    try:
        report = Storm(procs, receiver, duration_s=20).run()
    finally:
        procs.stop_all()
    summary = report.summary()
    assert report.failed_creates == 0, summary
    assert len(report.created) > 2000, summary
    assert report.lost == [], summary
    assert report.unexplained_duplicates == [], summary
    assert len(report.faults) >= MIN_FAULTS, summary
    assert len({f.role for f in report.faults}) >= 2, summary
