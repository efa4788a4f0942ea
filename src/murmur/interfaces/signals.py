"""SIGTERM and SIGHUP as an exception, so a command that started processes stops them first.

Python turns SIGINT into ``KeyboardInterrupt``, which unwinds the stack through every
``finally`` and ``with``; SIGTERM and SIGHUP kill the interpreter at once, and the processes it
started live on (re-parented to PID 1) with the files it meant to delete. Inside
:func:`terminate_by_exception` the first of them raises :class:`Terminated` in the main thread
instead, and the code it interrupts cleans up as it does for Ctrl-C.

An exception raised from a signal handler can land between any two bytecodes: between the fork
and the assignment that keeps the child's handle, or halfway through the teardown. Such steps
run :func:`shielded`: a signal arriving there is held back and raised when the step is done.
Later signals are ignored, so a second ``kill`` cannot cut the clean-up short (SIGKILL still
can).

Why not ``PR_SET_PDEATHSIG`` (children killed by the kernel when their parent dies)? It needs a
``preexec_fn``, which the subprocess documentation calls unsafe once threads run (the testnet's
progress bar is one), it fires when the forking *thread* exits rather than the process, and it
would not delete the temporary directory, which holds the nodes' identity keys, anyway.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A terminating signal arrived.

    A ``BaseException`` like ``KeyboardInterrupt``: the ``except Exception`` clauses of the code
    it interrupts (polling loops, best-effort shutdown calls) must not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal number (143 for SIGTERM), the shell's convention, as 130 for Ctrl-C."""
        return 128 + self.signum


class _Guard:
    """The state of one :func:`terminate_by_exception` block."""

    def __init__(self) -> None:
        self.fired = False
        self.held: int | None = None
        self.shields = 0

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.fired:
            return
        self.fired = True
        if self.shields:
            self.held = signum
        else:
            raise Terminated(signum)


_active: _Guard | None = None


@contextlib.contextmanager
def terminate_by_exception() -> Iterator[None]:
    """While the block runs, SIGTERM or SIGHUP raises :class:`Terminated` (once).

    The previous handlers are restored on the way out. A signal that is ignored on entry (SIGHUP
    under ``nohup``) stays ignored. Outside the main thread, where Python runs no signal
    handler, it changes nothing.
    """
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    guard, outer = _Guard(), _active
    previous = {
        sig: signal.signal(sig, guard.handle)
        for sig in TERMINATING_SIGNALS
        if signal.getsignal(sig) is not signal.SIG_IGN
    }
    _active = guard
    try:
        yield
    finally:
        _active = outer
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Holds a terminating signal back until the block is done, then raises it."""
    guard = _active
    if guard is None:
        yield
        return
    guard.shields += 1
    try:
        yield
    finally:
        guard.shields -= 1
    if guard.held is not None and not guard.shields:
        signum, guard.held = guard.held, None
        raise Terminated(signum)
