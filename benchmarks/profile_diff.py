"""Compare two py-spy ``--format raw`` profiles per unit of work.

    uv run --group bench python benchmarks/profile_diff.py A.txt B.txt \\
        --cost-a 74.4 --cost-b 81.5 [-n 22]

A profile only gives shares of its samples. Scaled by what one unit of
work cost in CPU in that run (for an API process, its CPU share divided
by its requests a second, in µs), each function's share becomes µs per
request, so two runs at different rates compare: the functions whose
time grew most from A to B come first, by total and by self time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from profile_top import summarise


def per_unit(path: Path, cost: float) -> tuple[dict[str, float], ...]:
    """µs per unit of work by function: (total, self)."""
    total, inclusive, exclusive = summarise(path, top=None)
    return tuple(
        {name: cost * count / total for name, count in rows}
        for rows in (inclusive, exclusive)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--cost-a", type=float, required=True)
    parser.add_argument("--cost-b", type=float, required=True)
    parser.add_argument("-n", type=int, default=22)
    args = parser.parse_args()
    a = per_unit(args.a, args.cost_a)
    b = per_unit(args.b, args.cost_b)
    for title, before, after in zip(("total", "self"), a, b, strict=True):
        print(f"\nby {title} time, µs per unit (A, B, B - A):")
        rows = sorted(
            before.keys() | after.keys(),
            key=lambda name: after.get(name, 0.0) - before.get(name, 0.0),
            reverse=True,
        )
        for name in rows[: args.n]:
            x, y = before.get(name, 0.0), after.get(name, 0.0)
            print(f"  {x:6.1f} {y:6.1f} {y - x:+6.1f}  {name}")


if __name__ == "__main__":
    main()
