"""The long fault storm: ``tests/storm.py``'s ``Storm`` for a minute or more.

Two APIs, two tickers and two workers of the code under test run as real
processes against a private Redis and a receiver in this process, with
the environment of ``tests/test_storm.py`` (``STORM_ENV``). Clients
create ``--rate`` timers/s, each with an ``Idempotency-Key``, for
``--duration`` seconds while a random role is SIGKILLed and restarted
every 2-4 s and a worker is SIGSTOPped once for 5 s; then every timer
must have fired, a duplicate allowed only for a webhook in flight at a
worker's kill::

    python benchmarks/fault_storm.py --duration 60

Reports (and writes to JSON) the storm's summary (timers, failed
creates, faults by kind, lost, duplicates, unexplained duplicates), the
faults with their times, the first lost and unexplained ids, and the
warnings and errors of every role's log. Exits 1 when a timer was lost,
a create failed or a duplicate is unexplained. The code under test must
support ``Idempotency-Key`` (this checkout's does; b6bf812's does not).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO_DIR,
    Code,
    RedisDeployment,
    add_common_args,
    deadline_alarm,
    describe_redis,
    machine,
    process_group,
    redis_binary,
    save,
)
from _service import first_lines, log_summary

sys.path.insert(0, str(REPO_DIR))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=7)
    add_common_args(parser)
    args = parser.parse_args()
    code = Code(args.code)
    # The storm's processes inherit this environment: only settings the
    # code knows may be in it.
    for key in list(os.environ):
        if key.startswith("WHEEL_") and not code.knows(key[6:].lower()):
            code.dropped.add(key)
            del os.environ[key]
    # The storm goes on up to 3x its duration until enough faults hit.
    deadline_alarm(args.duration * 3 + 420)

    from tests import support
    from tests.storm import Storm
    from tests.test_storm import STORM_ENV

    support.TIMER_WHEEL = str(code.timer_wheel)
    started = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp,
        process_group(Path(tmp)) as group,
    ):
        redis = RedisDeployment(
            Path(tmp),
            redis_binary(args.redis),
            args.appendfsync,
            args.cluster_masters,
        ).start()
        group.redis = redis
        env = {**STORM_ENV, "WHEEL_REDIS_URL": redis.url}
        logs_dir = Path(tmp) / "logs"
        logs_dir.mkdir()
        procs = support.Procs(env, logs_dir)
        receiver = support.Receiver()
        receiver.start()
        try:
            storm = Storm(
                procs,
                receiver,
                duration_s=args.duration,
                rate=args.rate,
                seed=args.seed,
            )
            report = storm.run()
        finally:
            procs.stop_all()
            receiver.stop()
        logs = {}
        errors = []
        for path in sorted(logs_dir.glob("*.log")):
            logs[path.stem] = log_summary(path)
            errors.extend(f"{path.stem}: {line}" for line in first_lines(path))
    summary = report.summary()
    kills = dict(summary.pop("kills"))
    passed = (
        summary["failed_creates"] == 0
        and summary["lost"] == 0
        and summary["unexplained_duplicates"] == 0
    )
    summary["passed"] = int(passed)
    overview = collections.Counter()
    for entry in logs.values():
        for message, n in entry["top"].items():
            overview[message] += n
    print(
        f"storm of {args.duration:g}s at {args.rate:g}/s: {summary}\n"
        f"  faults {kills}\n"
        f"  warnings/errors over all roles' logs: "
        f"{dict(overview.most_common(10))}"
    )
    path = save(
        "fault_storm",
        {
            "machine": machine(),
            "code": code.describe(),
            "redis": describe_redis(args),
            "args": vars(args),
            "env": {k: v for k, v in env.items() if k != "WHEEL_REDIS_URL"},
            "elapsed_s": round(time.time() - started, 1),
            "summary": summary,
            "kills": kills,
            "faults": [
                {
                    "role": f.role,
                    "kind": f.kind,
                    "at_s": round(f.at - started, 2),
                }
                for f in report.faults
            ],
            "lost_ids": report.lost[:20],
            "unexplained_duplicate_ids": report.unexplained_duplicates[:20],
            "log_errors": errors[:50],
            "logs": logs,
        },
        args.out,
    )
    print(f"saved {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
