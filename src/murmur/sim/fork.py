"""Run part of a simulation in a forked copy of the process, beside the rest of it.

Theory of operation: after :func:`os.fork` the child holds an exact copy of the simulation (the
engine, every node, the random streams), so continuing it there is the same as continuing it
here; the two copies just stop sharing a future. :func:`in_fork` starts ``work`` in the child
and returns at once; the child pickles what ``work`` returns into a pipe and leaves with
:func:`os._exit` (no atexit handlers, no flush of buffers it inherited). :meth:`Forked.result`
reads the pipe and reaps the child. A child that raised, died or was killed makes ``result``
raise :class:`ForkedWorkFailed` with what is known; a :class:`Forked` closed before its result
was read kills the child, so an exception in the parent leaves no process behind.

The onion simulation uses this to run its fast-path baseline from the state the warm-up left,
on the second core, while this process runs the onion phase from the same state.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from murmur.base.errors import MurmurError

T = TypeVar("T")


class ForkedWorkFailed(MurmurError):
    """The forked child raised, or ended without handing back a result."""


class Forked(Generic[T]):
    """A forked child running one piece of work; read its result once."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self._pid = pid
        self._read_fd = read_fd
        self._done = False

    def result(self) -> T:
        if self._done:
            raise ForkedWorkFailed("the forked result was already read or abandoned")
        self._done = True
        with os.fdopen(self._read_fd, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        if not payload:
            raise ForkedWorkFailed(f"the forked child ended without a result (status {status})")
        try:
            ok, value = pickle.loads(payload)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise ForkedWorkFailed(f"the forked child's result was cut short: {exc}") from exc
        if not ok:
            raise ForkedWorkFailed(f"the forked child raised:\n{value}")
        return value

    def close(self) -> None:
        """Kill and reap the child if its result was never read."""
        if self._done:
            return
        self._done = True
        os.close(self._read_fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)

    def __enter__(self) -> Forked[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def in_fork(work: Callable[[], T]) -> Forked[T]:
    """Start ``work()`` in a forked child; its return value must pickle."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        status = 0
        try:
            payload = pickle.dumps((True, work()), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException:  # everything, KeyboardInterrupt too, goes to the parent
            payload = pickle.dumps((False, traceback.format_exc()))
            status = 1
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(status)
    os.close(write_fd)
    return Forked(pid, read_fd)
