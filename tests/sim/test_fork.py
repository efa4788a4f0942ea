"""Work in a forked copy of the process: results, failures, and no child left behind."""

from __future__ import annotations

import os
import pickle
import time

import pytest

from murmur.sim.fork import Forked, ForkedWorkFailed, in_fork


def test_the_child_works_on_a_copy_and_hands_back_its_result() -> None:
    state = {"events": 10}

    def work() -> tuple[int, int]:
        state["events"] += 5
        return state["events"], os.getpid()

    with in_fork(work) as forked:
        events, pid = forked.result()
    assert events == 15 and pid != os.getpid()
    assert state == {"events": 10}


def test_a_large_result_does_not_block_the_child() -> None:
    with in_fork(lambda: bytes(5_000_000)) as forked:
        assert len(forked.result()) == 5_000_000


def test_an_exception_in_the_child_is_raised_here_with_its_traceback() -> None:
    def work() -> None:
        raise ValueError("phase went wrong")

    with in_fork(work) as forked, pytest.raises(ForkedWorkFailed, match="phase went wrong"):
        forked.result()


def test_a_child_that_dies_without_a_result_is_an_error() -> None:
    with in_fork(lambda: os._exit(3)) as forked:
        with pytest.raises(ForkedWorkFailed, match="without a result"):
            forked.result()
        with pytest.raises(ForkedWorkFailed, match="already read"):
            forked.result()


def test_leaving_without_the_result_kills_and_reaps_the_child() -> None:
    started = time.monotonic()
    with in_fork(lambda: time.sleep(60)) as forked:
        pid = forked._pid
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_result_cut_short_is_an_error() -> None:
    """A child killed halfway through writing leaves half a pickle in the pipe."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, pickle.dumps((True, bytes(1000)))[:100])
    os.close(write_fd)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    with Forked(pid, read_fd) as forked, pytest.raises(ForkedWorkFailed, match="cut short"):
        forked.result()
