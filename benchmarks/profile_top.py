"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile.

    uv run --group bench python benchmarks/profile_top.py PROFILE.txt [-n 25]

Prints the functions with the largest share of samples, by total (the
function or anything it calls is on the stack) and by self time (the
function is the innermost frame). With ``--under NAME`` only the stacks
that pass through a frame containing NAME are counted (shares stay
relative to all samples).
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def _frame_name(frame: str) -> str:
    # py-spy frames look like "send (wheel/webhooks/sender.py:61)"; drop
    # the line so that one function's lines add up.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarise(
    path: Path, top: int | None, under: str | None = None
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Samples in all, and the ``top`` functions (None: every one) by
    total and by self samples."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        if under and under not in stack:
            continue
        # py-spy may root a stack in a "process <pid>:<command>" frame.
        frames = [
            _frame_name(f)
            for f in stack.split(";")
            if "(" in f and not f.startswith("process ")
        ]
        if not frames:
            continue
        for name in set(frames):
            inclusive[name] += count
        exclusive[frames[-1]] += count
    return total, inclusive.most_common(top), exclusive.most_common(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("-n", type=int, default=25)
    parser.add_argument("--under", help="only stacks through this frame")
    args = parser.parse_args()
    total, inclusive, exclusive = summarise(args.profile, args.n, args.under)
    print(f"{total} samples")
    for title, rows in (("total", inclusive), ("self", exclusive)):
        print(f"\nby {title} time:")
        for name, count in rows:
            print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
