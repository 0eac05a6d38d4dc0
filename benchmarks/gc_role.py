"""Run a ``timer-wheel`` role and report the time its cyclic GC took.

    python benchmarks/gc_role.py THRESHOLD ROLE [ARGS...]

THRESHOLD is ``default`` or a first-generation threshold for
``gc.set_threshold``. At exit one JSON line goes to stderr:
``{"gc_seconds": ..., "collections": [gen0, gen1, gen2], "cpu_seconds":
...}``. ``fire.py --worker-gc`` starts its workers this way.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
import time


def main() -> int:
    threshold = sys.argv.pop(1)
    if threshold != "default":
        _, second, third = gc.get_threshold()
        gc.set_threshold(int(threshold), second, third)
    spent = {"seconds": 0.0, "collections": [0, 0, 0], "started": 0.0}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            spent["started"] = time.perf_counter()
        else:
            spent["seconds"] += time.perf_counter() - spent["started"]
            spent["collections"][info["generation"]] += 1

    def report() -> None:
        line = {
            "gc_seconds": round(spent["seconds"], 3),
            "collections": spent["collections"],
            "cpu_seconds": round(time.process_time(), 3),
            "gc_threshold": gc.get_threshold(),
        }
        print(json.dumps(line), file=sys.stderr, flush=True)

    gc.callbacks.append(on_gc)
    atexit.register(report)
    from wheel.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
