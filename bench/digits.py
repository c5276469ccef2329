"""Printing what the data supports: a figure's digits come from its interval's width (docs/protocol.md §3).

An interval of ±0.026 on 0.2294 says the third digit is noise: the figure prints as 0.23 [0.22, 0.27]. An
estimate (a power model, not a measurement) prints with at most two significant digits whatever its interval.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

DEFAULT_SIGNIFICANT = 3  # for a figure without an interval
ESTIMATE_SIGNIFICANT = 2


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def significant_digits(value: float, low: object = None, high: object = None, estimate: bool = False) -> int:
    """How many significant digits of `value` its interval [low, high] supports (1 at least)."""
    if _missing(value) or value == 0:
        return 1
    digits = DEFAULT_SIGNIFICANT
    if not (_missing(low) or _missing(high)) and high > low:
        # One significant digit of the half-width: the last digit of the figure that still carries information.
        half = (float(high) - float(low)) / 2
        digits = max(1, math.floor(math.log10(abs(value))) - math.floor(math.log10(half)) + 1)
    return min(digits, ESTIMATE_SIGNIFICANT) if estimate else digits


def fmt(value: object, digits: int = DEFAULT_SIGNIFICANT) -> str:
    """`value` with `digits` significant digits, without an exponent for ordinary magnitudes; '-' when missing."""
    if _missing(value):
        return "-"
    value = float(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if -4 <= magnitude < 6:
        decimals = digits - 1 - magnitude
        return f"{round(value, decimals):.{max(decimals, 0)}f}"
    return f"{value:.{max(digits - 1, 0)}e}"


def plain(value: object, digits: int = DEFAULT_SIGNIFICANT) -> str:
    """A figure without an interval: `digits` significant digits at most, trailing zeros dropped (0.01, not 0.0100,
    since no interval says the zeros are known)."""
    text = fmt(value, digits)
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def with_interval(value: object, low: object, high: object, estimate: bool = False) -> tuple[str, str, str]:
    """The figure and its interval's ends, each printed to the digits the interval supports."""
    if _missing(value):
        return "-", "-", "-"
    digits = significant_digits(float(value), low, high, estimate)
    # The ends are printed to the same decimal place as the figure.
    place = math.floor(math.log10(abs(float(value)))) if value else 0

    def same_place(x: object) -> str:
        if _missing(x) or x == 0:
            return fmt(x)
        return fmt(x, max(1, digits + math.floor(math.log10(abs(float(x)))) - place))

    return fmt(value, digits), same_place(low), same_place(high)


def figure(row: Mapping[str, Any], column: str) -> str:
    """`column` of a result row with its interval, e.g. "0.23 [0.22, 0.27]", to the digits they support."""
    estimate = row.get("energy_measured") is False and column.startswith("energy")
    value, low, high = with_interval(row.get(column), row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high"),
                                     estimate)
    return value if low == "-" else f"{value} [{low}, {high}]"
