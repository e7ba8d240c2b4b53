"""Result rows and the printed table."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import attrs


@attrs.frozen(kw_only=True)
class Row:
    """One metric: every run of trio_phoenix and of the raw baseline, and the target."""

    name: str
    unit: str
    phoenix: tuple[float, ...]
    raw: tuple[float, ...]
    higher_is_better: bool
    #: The ratio (trio_phoenix / raw) to reach: a minimum if higher is better, else a maximum.
    target: float | None = None
    note: str = ""
    #: The target bounds trio_phoenix's own median, not a ratio (the raw side is not run).
    absolute: bool = False

    @property
    def phoenix_median(self) -> float:
        return statistics.median(self.phoenix)

    @property
    def raw_median(self) -> float:
        return statistics.median(self.raw)

    @property
    def ratio(self) -> float:
        """The median of the per-run ratios: each run pairs trio_phoenix with the raw run
        measured next to it, so a machine that slows down mid-session shifts both."""
        if self.absolute or not all(self.raw):
            return math.nan
        return statistics.median(
            phoenix / raw for phoenix, raw in zip(self.phoenix, self.raw, strict=True)
        )

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.absolute:
            value = self.phoenix_median
            return value >= self.target if self.higher_is_better else value <= self.target
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target

    def as_dict(self) -> dict[str, object]:
        """The row as plain data (for ``--json``)."""
        return {
            "name": self.name,
            "unit": self.unit,
            "trio_phoenix": self.phoenix_median,
            "raw": self.raw_median,
            "ratio": self.ratio,
            "higher_is_better": self.higher_is_better,
            "target": self.target,
            "met": self.met,
            "runs": len(self.phoenix),
            "trio_phoenix_runs": list(self.phoenix),
            "raw_runs": list(self.raw),
        }


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_table(rows: Sequence[Row], baseline: str = "raw t-ws") -> str:
    """A fixed-width table: medians, ratio, which direction is better, target and verdict."""
    header = (
        "benchmark",
        "unit",
        "trio_phoenix",
        baseline,
        "ratio",
        "better",
        "target",
        "met",
        "runs",
    )
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        if row.target is None:
            target, met = "-", "-"
        else:
            bound = f"{row.target:g}" if row.absolute else f"{row.target:.2f}x"
            target = f"{'>=' if row.higher_is_better else '<='} {bound}"
            met = "yes" if row.met else "NO"
        lines.append(
            (
                row.name,
                row.unit,
                _number(row.phoenix_median),
                "-" if row.absolute else _number(row.raw_median),
                "-" if math.isnan(row.ratio) else f"{row.ratio:.2f}x",
                "higher" if row.higher_is_better else "lower",
                target,
                met,
                str(len(row.phoenix)),
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    left = {0, 1, 5, 7}
    out = []
    for index, line in enumerate(lines):
        cells = [
            cell.ljust(widths[column]) if column in left else cell.rjust(widths[column])
            for column, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        out.append("")
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def environment() -> str:
    """One line on the machine and the versions measured."""
    packages = ", ".join(
        f"{name} {_version(name)}"
        for name in ("trio-phoenix", "trio", "trio-websocket", "wsproto", "websockets", "orjson")
    )
    return (
        f"{_cpu_model()} x{os.cpu_count()}, {platform.system()} {platform.release()}; "
        f"{platform.python_implementation()} {platform.python_version()}; {packages}"
    )


def load() -> str:
    """The machine's load averages now (other work shares the cores)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
