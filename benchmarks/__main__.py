"""``python -m benchmarks``: trio_phoenix against raw trio-websocket, in one run.

Starts the benchmark server in its own process, runs every group (or those named with
``--only``) with both clients interleaved, and prints a table of medians and ratios. The
``presence`` group compares trio_phoenix's presence view with phoenix.js's ``Presence`` on
Node instead, in a table of its own; ``python -m benchmarks presence`` runs only that group.
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
from ._presence import PresenceConfig, presence
from ._report import Row, environment, format_table, load
from ._suites import OWN_TABLE, SUITES, Config

PRESENCE = "presence"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark trio_phoenix against raw trio-websocket on a local server.",
    )
    parser.add_argument(
        "group",
        nargs="?",
        choices=[PRESENCE],
        help="run only this group (same as --only presence)",
    )
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted([*SUITES, PRESENCE]),
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
    names = [args.group] if args.group else args.only or [*SUITES, PRESENCE]
    print(environment(), flush=True)
    print(load(), flush=True)
    started = time.perf_counter()
    rows: list[Row] = []
    engine_rows: list[Row] = []
    servers = [name for name in names if name != PRESENCE]
    if servers:
        with server_process() as port:
            for name in servers:
                print(f"{name}...", file=sys.stderr, flush=True)
                if name in OWN_TABLE:
                    engine_rows += SUITES[name](port, config)
                else:
                    rows += SUITES[name](port, config)
    presence_rows: list[Row] = []
    if PRESENCE in names:
        print(f"{PRESENCE}...", file=sys.stderr, flush=True)
        presence_config = PresenceConfig.quick() if args.quick else PresenceConfig.full()
        if args.runs is not None:
            presence_config = attrs.evolve(presence_config, runs=args.runs)
        summary, presence_rows = presence(presence_config)
    elapsed = time.perf_counter() - started
    if rows:
        print()
        print(
            "trio_phoenix vs raw trio-websocket, same server, same run: medians of the runs; "
            "ratio = median over runs of trio_phoenix / raw measured back to back"
        )
        print()
        print(format_table(rows))
    if engine_rows:
        print()
        print(
            "engine, JSON decoder and compression: candidate / baseline as each row names them "
            "(the trio_phoenix column is the candidate), same run, medians of the runs"
        )
        print()
        print(format_table(engine_rows, baseline="baseline"))
    if presence_rows:
        print()
        print(
            "presence view: trio_phoenix vs phoenix.js Presence, same workload, same run: "
            "medians of the runs; ratio = median over runs of trio_phoenix / phoenix.js "
            "measured back to back"
        )
        print(summary)
        print()
        print(format_table(presence_rows, baseline="phoenix.js"))
    print()
    print(load(), flush=True)
    print(f"total {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "environment": environment(),
                    "rows": [row.as_dict() for row in rows],
                    "engine_rows": [row.as_dict() for row in engine_rows],
                    "presence_rows": [row.as_dict() for row in presence_rows],
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
