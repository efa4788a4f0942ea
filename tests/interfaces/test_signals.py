"""SIGTERM and SIGHUP as :class:`Terminated`, raised in this (the main) thread of pytest.

Each test raises a real signal with ``signal.raise_signal``; the handler runs before the call
returns. The previous handlers (pytest's own) must be back when a block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from murmur.interfaces.signals import (
    TERMINATING_SIGNALS,
    Terminated,
    shielded,
    terminate_by_exception,
)


@pytest.fixture(autouse=True)
def default_dispositions() -> Iterator[None]:
    """Each test starts from the default dispositions, as a shell starts a program, whatever
    launched pytest (under ``nohup`` SIGHUP is ignored, and stays ignored: last test)."""
    saved = {sig: signal.getsignal(sig) for sig in TERMINATING_SIGNALS}
    for sig in TERMINATING_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", TERMINATING_SIGNALS, ids=lambda s: s.name)
def test_a_signal_unwinds_the_block_and_the_old_handler_returns(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(Terminated) as caught, terminate_by_exception():
        signal.raise_signal(sig)
    assert caught.value.signum == sig and caught.value.exit_code == 128 + sig
    assert signal.getsignal(sig) == before


def test_a_second_signal_does_not_cut_the_clean_up_short() -> None:
    cleaned = False
    with pytest.raises(Terminated), terminate_by_exception():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.raise_signal(signal.SIGHUP)
            cleaned = True
    assert cleaned


def test_a_shielded_step_finishes_before_the_signal_is_raised() -> None:
    steps: list[str] = []
    with pytest.raises(Terminated), terminate_by_exception():
        with shielded():
            signal.raise_signal(signal.SIGTERM)
            steps.append("finished")
        steps.append("went on")
    assert steps == ["finished"]


def test_an_ignored_sighup_stays_ignored() -> None:
    """``nohup`` ignores SIGHUP for the command it starts; a testnet under it keeps running."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with terminate_by_exception():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.raise_signal(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_outside_the_main_thread_it_changes_nothing() -> None:
    """Python runs signal handlers in the main thread only, and refuses to set one elsewhere."""
    seen: list[object] = []

    def run() -> None:
        with terminate_by_exception(), shielded():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_signal_the_process_was_told_to_ignore_stays_ignored() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # started under nohup
    with terminate_by_exception():
        signal.raise_signal(signal.SIGHUP)  # nothing happens
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
