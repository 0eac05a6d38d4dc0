"""Run one harness for two or more variants, alternating run by run, and
report the medians side by side.

A variant is a name and extra arguments for the harness. ``--old DIR``
adds the variants ``new`` (``--code`` this checkout, or ``--new DIR``)
and ``old`` (``--code DIR``); ``--variant NAME=ARGS`` adds any other::

    python benchmarks/compare.py --old /tmp/tw-old --runs 5 -- \\
        api_load.py --duration 15
    python benchmarks/compare.py --runs 5 --variant metrics= \\
        --variant nometrics=--no-metrics -- api_load.py
    python benchmarks/compare.py --runs 3 --variant single= \\
        --variant "cluster=--cluster-masters 3" -- fire.py --burst 20000

Each run of a variant is a fresh ``HARNESS ARGS VARIANT-ARGS --runs 1
--out FILE`` process; the order of the variants flips every run
(A B, B A, A B ...), so that a drift of the machine (a busy neighbour)
weighs on all of them alike. Every numeric entry of each run's
``summary`` is collected; the table shows each variant's median and its
ratio to the first variant's. The runs' JSON files are kept in
``results/compare-<harness>-<utc>/``, and the comparison in
``results/compare-<harness>-<utc>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

from _common import (
    BENCH_DIR,
    REPO_DIR,
    RESULTS_DIR,
    _die_with_parent,
    machine,
    median,
    save,
)


def parse_variants(args: argparse.Namespace) -> list[tuple[str, str]]:
    variants: list[tuple[str, str]] = []
    if args.old:
        variants.append(("new", f"--code {shlex.quote(str(args.new))}"))
        variants.append(("old", f"--code {shlex.quote(str(args.old))}"))
    for text in args.variant:
        name, sep, extra = text.partition("=")
        if not sep or not name:
            raise SystemExit(f"--variant wants NAME=ARGS, not {text!r}")
        variants.append((name, extra))
    if len(variants) < 2:
        raise SystemExit("give --old DIR or at least two --variant")
    if len({name for name, _ in variants}) != len(variants):
        raise SystemExit("variant names must differ")
    return variants


def run_child(cmd: list[str], timeout_s: float) -> int:
    """Run a harness; a SIGTERM to us reaches it and waits its teardown."""
    child = subprocess.Popen(cmd, cwd=REPO_DIR, preexec_fn=_die_with_parent)

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
        raise SystemExit(128 + signum)

    previous = {
        sig: signal.signal(sig, forward)
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        return child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return -1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def numeric(summary: dict[str, object]) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in summary.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("--old", help="folder of the old code (with .venv)")
    parser.add_argument("--new", default=str(REPO_DIR))
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per run"
    )
    parser.add_argument("harness", help="e.g. api_load.py")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    variants = parse_variants(args)
    rest = [a for a in args.args if a != "--"]
    script = BENCH_DIR / args.harness
    if not script.exists():
        raise SystemExit(f"no harness {script}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"compare-{script.stem}-{stamp}"
    folder = RESULTS_DIR / name
    figures: dict[str, list[dict[str, float]]] = {n: [] for n, _ in variants}
    codes: dict[str, object] = {}
    runs: list[dict[str, object]] = []
    for run in range(args.runs):
        order = variants if run % 2 == 0 else variants[::-1]
        for variant, extra in order:
            out = folder / f"{variant}-{run + 1}.json"
            cmd = [sys.executable, str(script), *rest, *shlex.split(extra)]
            cmd += ["--runs", "1", "--out", str(out)]
            print(f"== run {run + 1}/{args.runs} {variant}: {shlex.join(cmd)}")
            started = time.monotonic()
            code = run_child(cmd, args.timeout)
            entry: dict[str, object] = {
                "run": run + 1,
                "variant": variant,
                "exit": code,
                "seconds": round(time.monotonic() - started, 1),
                "file": str(out),
            }
            if out.exists():
                data = json.loads(out.read_text())
                entry["summary"] = numeric(data.get("summary", {}))
                figures[variant].append(entry["summary"])
                codes[variant] = data.get("code")
            runs.append(entry)
    first = variants[0][0]
    keys = sorted(
        {k for rows in figures.values() for row in rows for k in row}
    )
    medians = {
        variant: {
            key: median([row[key] for row in rows if key in row])
            for key in keys
        }
        for variant, rows in figures.items()
    }
    names = [n for n, _ in variants]
    ratios = [f"{n}/{first}" for n in names[1:]]
    widths = [max(12, len(n) + 2) for n in names + ratios]
    print(f"\nmedians of {args.runs} runs ({script.name} {shlex.join(rest)})")
    print(
        f"{'figure':34s}"
        + "".join(
            f"{n:>{w}}" for n, w in zip(names + ratios, widths, strict=True)
        )
    )
    for key in keys:
        cells = [medians[n].get(key, math.nan) for n in names]
        base = cells[0]
        cells += [c / base if base else math.nan for c in cells[1:]]
        print(
            f"{key:34s}"
            + "".join(
                f"{c:>{w}.6g}" for c, w in zip(cells, widths, strict=True)
            )
        )
    path = save(
        name,
        {
            "machine": machine(),
            "harness": script.name,
            "args": rest,
            "variants": {
                n: {"args": extra, "code": codes.get(n)}
                for n, extra in variants
            },
            "medians": medians,
            "runs": runs,
        },
        RESULTS_DIR / f"{name}.json",
    )
    print(f"saved {path}")
    return 0 if all(r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
