"""``type=`` functions for argparse that check a number's range as they parse it.

A value out of range is then refused by argparse itself, before anything starts, with its
usual ``error: argument --rate: ...`` line and exit status 2, instead of failing later with a
traceback or giving a meaningless result (a zero rate, a negative count). Floats must be
finite: ``float()`` accepts ``nan`` and ``inf``, and ``nan`` fails every comparison, so a check
written as "refuse if below the minimum" lets it through.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An int in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""
    if maximum is None:
        return _checked(int, f"an integer >= {minimum}", lambda v: v >= minimum)
    return _checked(int, f"an integer in [{minimum}, {maximum}]", lambda v: minimum <= v <= maximum)


def real(minimum: float, *, above: bool = False) -> Callable[[str], float]:
    """A finite float ``>= minimum``, or ``> minimum`` when ``above``."""
    return _checked(
        float,
        f"a number {'>' if above else '>='} {minimum:g}",
        lambda v: math.isfinite(v) and (v > minimum if above else v >= minimum),
    )


def fraction(*, below_one: bool = False) -> Callable[[str], float]:
    """A float in ``[0, 1]``, or ``[0, 1)`` when ``below_one``."""
    return _checked(
        float,
        f"a fraction in [0, 1{')' if below_one else ']'}",
        lambda v: 0.0 <= v < 1.0 if below_one else 0.0 <= v <= 1.0,
    )


def _checked(convert: Callable[[str], T], want: str, ok: Callable[[T], bool]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"want {want}, got {text!r}")
        return value

    return parse
