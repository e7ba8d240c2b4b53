"""``python -m benchmarks``: trio_phoenix against raw trio-websocket, in one run.

Starts the benchmark server in its own process, runs every group (or those named with
``--only``) with both clients interleaved, and prints a table of medians and ratios.
``--quick`` is a ~30 s smoke run with small sizes and one run each; ``--profile`` prints
cProfile tables of trio_phoenix's inbound and push -> reply paths instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import attrs

from ._harness import server_process
from ._report import Row, environment, format_table
from ._suites import SUITES, Config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark trio_phoenix against raw trio-websocket on a local server.",
    )
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SUITES),
        help="run only this group (repeatable)",
    )
    parser.add_argument("--runs", type=int, help="runs per metric (default 5; quick 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile trio_phoenix's inbound and push -> reply paths instead",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks and print the table."""
    args = _parser().parse_args(argv)
    config = Config.quick() if args.quick else Config.full()
    if args.runs is not None:
        config = attrs.evolve(config, runs=args.runs)
    if args.profile:
        from ._profile import profile

        with server_process() as port:
            profile(port, config)
        return 0
    names = args.only or list(SUITES)
    print(environment(), flush=True)
    started = time.perf_counter()
    rows: list[Row] = []
    with server_process() as port:
        for name in names:
            print(f"{name}...", file=sys.stderr, flush=True)
            rows += SUITES[name](port, config)
    elapsed = time.perf_counter() - started
    print()
    print(
        "trio_phoenix vs raw trio-websocket, same server, same run: medians of the runs; "
        "ratio = median over runs of trio_phoenix / raw measured back to back"
    )
    print()
    print(format_table(rows))
    print()
    print(f"total {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {"environment": environment(), "rows": [row.as_dict() for row in rows]},
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
