"""Churn: nodes leave and rejoin the network at random.

Theory of operation: each node alternates exponential up-times (rate ``leave_rate_per_s``) and
exponential down-times (mean ``mean_downtime_s``). Leaving and joining are callbacks (the
scenario disconnects the node from its neighbours, and on return boots a fresh protocol object
and reconnects it), so this module only keeps the clock of who is up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from murmur.base.errors import ConfigError
from murmur.base.rng import Rng
from murmur.sim.engine import Engine

NodeEvent = Callable[[int, float], None]


class Churn:
    def __init__(
        self,
        engine: Engine,
        *,
        leave_rate_per_s: float,
        mean_downtime_s: float,
        rng: Rng,
        leave: NodeEvent,
        join: NodeEvent,
    ) -> None:
        if leave_rate_per_s <= 0.0 or mean_downtime_s <= 0.0:
            raise ConfigError("churn needs a positive leave rate and downtime")
        self._engine = engine
        self._leave_rate = leave_rate_per_s
        self._join_rate = 1.0 / mean_downtime_s
        self._rng = rng
        self._leave = leave
        self._join = join
        self.departures = 0

    def start(self, nodes: Iterable[int], now: float) -> None:
        for index in nodes:
            self._schedule_leave(index, now)

    def _schedule_leave(self, index: int, now: float) -> None:
        at = now + self._rng.expovariate(self._leave_rate)
        self._engine.at(at, lambda t: self._on_leave(index, t))

    def _on_leave(self, index: int, now: float) -> None:
        self.departures += 1
        self._leave(index, now)
        at = now + self._rng.expovariate(self._join_rate)
        self._engine.at(at, lambda t: self._on_join(index, t))

    def _on_join(self, index: int, now: float) -> None:
        self._join(index, now)
        self._schedule_leave(index, now)
