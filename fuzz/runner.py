"""Hands a harness's ``one_input`` to atheris (imported here only, never at module level)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def fuzz_main(one_input: Callable[[bytes], None]) -> None:
    """Instruments every module imported so far (the harness imported what it fuzzes) and runs
    libFuzzer with the command line's corpus directories and flags."""
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
