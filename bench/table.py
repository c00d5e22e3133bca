"""The benchmark's one output: rows of measure, reference, ratio and target, as text or Markdown.

Every figure stands beside a reference measured in the same run on the same
machine (the machines are shared and noisy, so an absolute number alone says
little). ``ratio`` is always ``value / reference``: for a rate, the fraction
of the reference reached; for a time, how many times longer it took.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: Column headings, in order.
HEADINGS: Final = (
    "section",
    "measure",
    "value",
    "unit",
    "reference",
    "ref value",
    "ratio",
    "target",
    "status",
)


class Bound(enum.StrEnum):
    """How a value must compare with a target's bound."""

    BELOW = "<"
    AT_MOST = "<="
    AT_LEAST = ">="


class Basis(enum.StrEnum):
    """What a target is checked on: the value itself, or its ratio to the reference."""

    VALUE = "value"
    RATIO = "ratio"


@dataclass(frozen=True, slots=True)
class Reference:
    """What a figure is compared with: a name for people and its measured value (same unit)."""

    what: str
    value: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a target was met, and if not, by how much it was missed (a fraction)."""

    met: bool
    shortfall: float

    def describe(self) -> str:
        """``met``, or ``MISSED`` with how far off, e.g. ``MISSED (+23% over)``."""
        if self.met:
            return "met"
        return f"MISSED ({_percent(self.shortfall)})"


def _percent(shortfall: float) -> str:
    if math.isinf(shortfall):
        return "no value"
    if shortfall >= 0:
        return f"+{shortfall:.0%} over"
    return f"{-shortfall:.0%} short"


@dataclass(frozen=True, slots=True)
class Target:
    """A design target: ``value <op> bound`` (or ``ratio <op> bound``)."""

    bound: Bound
    limit: float
    basis: Basis = Basis.VALUE

    def describe(self, unit: str) -> str:
        """The target as people read it, e.g. ``< 5 ms`` or ``>= 40% of ref``."""
        if self.basis is Basis.RATIO:
            return f"{self.bound} {self.limit:.0%} of ref"
        return f"{self.bound} {format_number(self.limit)} {unit}".rstrip()

    def check(self, value: float, ratio: float | None) -> Verdict:
        """Whether ``value`` (or ``ratio``) meets the target.

        The shortfall is positive when a ceiling was exceeded (``+0.23``:
        23% over) and negative when a floor was not reached (``-0.1``: 10% short).
        """
        observed = ratio if self.basis is Basis.RATIO else value
        if observed is None or math.isnan(observed):
            return Verdict(met=False, shortfall=math.inf)
        if self.bound is Bound.BELOW:
            met = observed < self.limit
        elif self.bound is Bound.AT_MOST:
            met = observed <= self.limit
        else:
            met = observed >= self.limit
        if met:
            return Verdict(met=True, shortfall=0.0)
        return Verdict(met=False, shortfall=observed / self.limit - 1)


@dataclass(frozen=True, slots=True)
class Result:
    """One row: a measured figure, what it is compared with, and the target it answers to."""

    section: str
    measure: str
    value: float
    unit: str
    reference: Reference | None = None
    targets: tuple[Target, ...] = ()

    @property
    def ratio(self) -> float | None:
        """``value / reference``, or ``None`` without a (non-zero) reference."""
        if self.reference is None or self.reference.value == 0:
            return None
        return self.value / self.reference.value

    @property
    def verdicts(self) -> tuple[Verdict, ...]:
        """Each target's verdict, in order."""
        return tuple(t.check(self.value, self.ratio) for t in self.targets)

    @property
    def met(self) -> bool | None:
        """Whether every target was met (``None`` without targets)."""
        return None if not self.targets else all(v.met for v in self.verdicts)

    def cells(self) -> tuple[str, ...]:
        """The row's cells, formatted, in :data:`HEADINGS` order."""
        ref = self.reference
        ratio = self.ratio
        return (
            self.section,
            self.measure,
            format_number(self.value),
            self.unit,
            "" if ref is None else ref.what,
            "" if ref is None else format_number(ref.value),
            "" if ratio is None else f"{ratio:.2f}x",
            "; ".join(t.describe(self.unit) for t in self.targets),
            "; ".join(v.describe() for v in self.verdicts),
        )

    def as_json(self) -> dict[str, Any]:
        """The row as plain JSON values (for ``--json``)."""
        return {
            "section": self.section,
            "measure": self.measure,
            "value": self.value,
            "unit": self.unit,
            "reference": None
            if self.reference is None
            else {"what": self.reference.what, "value": self.reference.value},
            "ratio": self.ratio,
            "targets": [
                {
                    "target": t.describe(self.unit),
                    "met": v.met,
                    "shortfall": None if v.met or math.isinf(v.shortfall) else v.shortfall,
                }
                for t, v in zip(self.targets, self.verdicts, strict=True)
            ],
        }


def format_number(value: float) -> str:
    """Three significant digits, thousands separated: ``1,234,567``, ``0.482``, ``16.0``."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render_text(results: Sequence[Result]) -> str:
    """A fixed-width table for a terminal."""
    rows = [HEADINGS, *(r.cells() for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    numeric = {2, 5, 6}

    def line(cells: Iterable[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADINGS), rule, *(line(r.cells()) for r in results)]) + "\n"


def render_markdown(results: Sequence[Result]) -> str:
    """A GitHub-flavoured Markdown table (what docs/performance.md holds)."""

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---", "---", "---:", "---", "---", "---:", "---:", "---", "---"]
    return (
        "\n".join(
            [line(HEADINGS), "|" + "|".join(align) + "|", *map(line, (r.cells() for r in results))]
        )
        + "\n"
    )


def render_json(results: Sequence[Result], context: dict[str, Any]) -> str:
    """The rows and the run's context as one JSON document."""
    return json.dumps(
        {"context": context, "results": [r.as_json() for r in results]}, indent=2, sort_keys=False
    )
