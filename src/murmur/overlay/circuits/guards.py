"""Entry guards: the few relays a node takes hop 1 from, kept for weeks.

Theory of operation (Tor's guard algorithm, proposal 271, reduced to what a network where every
node relays needs). Without guards every circuit draws hop 1 afresh, so over months every
relay a node ever sends through is a fresh chance that hop 1 is a spy: a node that sends often
is, sooner or later, seen leaving by a spy at hop 1, and with a second spy later on that circuit
(or with its transactions linked on chain and pooled) it is named. With guards a node whose
guard is honest is never seen at hop 1, however long it sends; one whose guard is a spy (a
fraction p of nodes) is seen at hop 1 all the time. Guards change *which* nodes are exposed
(about p of them, for as long as the guard is kept) rather than *how much* on average; what
they remove is the exposure that grows with time (docs/evaluation.md §6, "Entry guards").

The state is an ordered list of sampled guards. A guard is usable while its relay is listed
in the directory, qualifies for hop 1 (its score, a network prefix other than ours, and with
regional paths our region while the client draws hops from it) and is not marked unreachable.
The *primary* guards are the first ``count`` usable ones in the order they were sampled;
circuits take hop 1 from them. A new guard is sampled (score-weighted, as
:func:`select_path` draws a hop, on a prefix no other guard uses) only when fewer than
``count`` are usable and the list holds fewer than ``max_sampled``, and neither in the node's
first ``settle_s`` (its directory is then what its first peers chose to offer) nor while a guard
missing from the directory is waited for (a restarted node learns the directory again over
minutes; the runtime also hands it the guards' kept announcements). So an unreachable primary
guard is replaced by the next one already sampled, not by a fresh draw: an adversary that
blocks a node's guard, or one that knocks circuits down at hop 1, moves it along a list it
cannot choose, and at most ``max_sampled`` relays ever become its guards. An unreachable guard
is tried again after ``retry_s``, and when it answers it is primary again.

A guard leaves the list when its lifetime ends (``lifetime_s`` plus uniform jitter, on the wall
clock, so a node switched off for a month does not keep a stale guard), or when it has been
unlisted from the directory for ``unlisted_grace_s`` (a relay that went away). A guard whose
circuits fail after it answered far more often than circuits do is disabled (path bias,
:mod:`murmur.overlay.circuits.path_bias`): it stays on the list, unusable, until its lifetime
ends, so the next guard on the list takes its place and it is not drawn again meanwhile (at
most two are disabled a day; more failing one after the other points at the network or at
us). Times that must
survive a restart are wall-clock (Unix seconds); :meth:`EntryGuards.records` and the
``records`` argument carry the list across restarts (the runtime keeps it in the node
directory), and ``version`` changes whenever the list does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from murmur.base.ids import NodeId
from murmur.base.rng import Rng
from murmur.overlay.circuits.path_bias import PathBiasConfig, PathBiasCounts
from murmur.overlay.circuits.selection import (
    HopRegion,
    NoCircuitAvailable,
    RelayDirectory,
    RelayInfo,
    hop_candidates,
    select_path,
)

DAY_S = 86_400.0
OutcomeKind = Literal["circuit", "collapse", "message"]
"""What a path-bias outcome is of: a circuit built or failed, a built one collapsed, a message."""


@dataclass(frozen=True, slots=True)
class GuardConfig:
    count: int = 0
    """Primary guards circuits take hop 1 from (0: no guards, hop 1 from every relay)."""
    lifetime_s: float = 30 * DAY_S
    lifetime_jitter_s: float = 30 * DAY_S
    """A guard is kept ``lifetime_s`` plus uniform jitter in [0, this]: Tor's 30 to 60 days."""
    retry_s: float = 600.0
    """An unreachable guard is skipped this long, then tried again (Tor: 10 minutes)."""
    max_sampled: int = 20
    """Guards on the list at most; when all are unusable no circuit is built."""
    unlisted_grace_s: float = 20 * DAY_S
    """A guard missing from the directory this long leaves the list (Tor: 20 days)."""
    settle_s: float = 15.0
    """No guard is drawn in the node's first seconds: its directory is then only what its
    first peers offered (a bootstrap peer would choose the guard for weeks); after this many,
    every outbound peer has offered its share (Tor waits for a consensus the same way)."""
    replace_unlisted_after_s: float = 600.0
    """A guard missing from the directory is waited for this long before another is drawn in
    its place (a restarted node learns the directory again over minutes; drawing at once would
    add a guard at every restart)."""
    path_bias: PathBiasConfig = field(default_factory=PathBiasConfig)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("entry guard count must not be negative")
        if self.count and self.max_sampled < self.count:
            raise ValueError("max_sampled must be at least the guard count")
        if min(self.lifetime_s, self.retry_s, self.unlisted_grace_s) <= 0:
            raise ValueError("guard lifetimes and retry interval must be positive")
        if min(self.lifetime_jitter_s, self.settle_s, self.replace_unlisted_after_s) < 0:
            raise ValueError("guard jitter and waiting times must not be negative")


@dataclass(frozen=True, slots=True)
class GuardRecord:
    """One sampled guard, as kept across restarts (times on the wall clock, Unix seconds)."""

    node_id: NodeId
    added_at: float
    expires_at: float
    unlisted_since: float | None = None
    path_bias: PathBiasCounts = field(default_factory=PathBiasCounts)
    """How the circuits that got past this guard ended (scaled counts)."""
    use_bias: PathBiasCounts = field(default_factory=PathBiasCounts)
    """Whether the messages its circuits carried came back through gossip (scaled counts)."""
    disabled_at: float | None = None
    """When path bias disabled it (it then stays on the list, unusable, until it expires)."""


class EntryGuards:
    def __init__(
        self,
        config: GuardConfig,
        rng: Rng,
        records: Iterable[GuardRecord] = (),
        *,
        now: float = 0.0,
    ) -> None:
        """``records``: the list kept from an earlier run; ``now``: the node's start."""
        self.config = config
        self._rng = rng
        self._settled_at = now + config.settle_s
        unique: dict[NodeId, GuardRecord] = {}
        for record in records:
            unique.setdefault(record.node_id, record)
        self._sampled: list[GuardRecord] = list(unique.values())[: config.max_sampled]
        self._unreachable_until: dict[NodeId, float] = {}
        """Monotonic time until which a guard is skipped (not kept across restarts)."""
        self.version = 0
        """Changes whenever the list does (for whoever persists it)."""
        self.withheld = 0
        """Times path bias condemned a guard but did not disable it: too many were, lately."""
        self.spared = 0
        """Times a guard's circuits fell under path bias's fixed bar but were not judged so:
        under the bar lowered for a network whose circuits fail too (the relay-side
        baseline), or while waiting for that baseline to form."""

    def records(self) -> list[GuardRecord]:
        return list(self._sampled)

    def holds(self, node_id: NodeId) -> bool:
        return any(g.node_id == node_id for g in self._sampled)

    def primary(
        self,
        directory: RelayDirectory,
        *,
        origin: NodeId,
        origin_prefixes: frozenset[bytes],
        min_score: float,
        now: float,
        wall_now: float,
        region: HopRegion | None = None,
    ) -> list[RelayInfo]:
        """The relays hop 1 is drawn from now: the first ``count`` usable guards in sampling
        order, sampling new ones while there are too few and the list has room, but not in the
        node's first ``settle_s`` nor while a guard missing from the directory is waited for
        (``replace_unlisted_after_s``). Empty when nothing is usable then, or when every guard
        on a full list is unusable (or no relay qualifies). ``region``: the region paths draw
        hops from now (regional paths), which guards must be in to be usable and are sampled
        from; a guard outside it waits on the list, usable again if paths fall back to every
        relay."""
        self._prune(directory, wall_now)
        usable = self._usable(directory, origin, origin_prefixes, min_score, now, region)
        waited_for = any(
            g.unlisted_since is not None
            and g.disabled_at is None
            and wall_now - g.unlisted_since < self.config.replace_unlisted_after_s
            for g in self._sampled
        )
        if now < self._settled_at or waited_for:
            return usable[: self.config.count]
        while len(usable) < self.config.count and len(self._sampled) < self.config.max_sampled:
            guard = self._sample(directory, origin, origin_prefixes, min_score, wall_now, region)
            if guard is None:
                break
            usable.append(guard)
        return usable[: self.config.count]

    def failed(self, node_id: NodeId, now: float) -> None:
        """Hop 1 could not be reached through this guard (no link, or no answer to CREATE)."""
        if self.holds(node_id):
            self._unreachable_until[node_id] = now + self.config.retry_s

    def succeeded(self, node_id: NodeId) -> None:
        self._unreachable_until.pop(node_id, None)

    def circuit_ended(
        self, node_id: NodeId, *, ok: bool, wall_now: float, expected: float | None = 1.0
    ) -> bool:
        """A circuit through this guard that got past it was built (``ok``) or failed; True
        when this disables the guard (:mod:`path_bias`), judged against the share of circuits
        an honest guard would let through now (``expected``, from our relay's view of the
        network; None while that view is not formed: the fixed bar, on
        ``min_outcomes_unknown_network`` outcomes). The counts are kept with the list but do
        not change ``version`` (whoever persists the list saves them with it now and then);
        disabling does."""
        return self._judge(node_id, ok, wall_now, kind="circuit", expected=expected)

    def circuit_collapsed(
        self, node_id: NodeId, *, wall_now: float, expected: float | None = 1.0
    ) -> bool:
        """A circuit through this guard counted ok when built was destroyed past the guard
        later: the ok is taken back. True when this disables the guard, as
        :meth:`circuit_ended`."""
        return self._judge(node_id, False, wall_now, kind="collapse", expected=expected)

    def message_ended(self, node_id: NodeId, *, ok: bool, wall_now: float) -> bool:
        """A message a circuit through this guard carried came back through gossip (``ok``)
        or not in time; True when this disables the guard, as :meth:`circuit_ended`."""
        return self._judge(node_id, ok, wall_now, kind="message")

    def _judge(
        self,
        node_id: NodeId,
        ok: bool,
        wall_now: float,
        *,
        kind: OutcomeKind,
        expected: float | None = 1.0,
    ) -> bool:
        bias = self.config.path_bias
        for i, guard in enumerate(self._sampled):
            if guard.node_id != node_id:
                continue
            if guard.disabled_at is not None:
                return False
            if kind == "message":
                guard = replace(guard, use_bias=guard.use_bias.add(ok, bias))
                disable = guard.use_bias.condemns(bias, bias.min_messages)
            else:
                counts = guard.path_bias
                counts = counts.revoke() if kind == "collapse" else counts.add(ok, bias)
                guard = replace(guard, path_bias=counts)
                if expected is None:
                    disable = guard.path_bias.condemns(bias, bias.min_outcomes_unknown_network)
                else:
                    disable = guard.path_bias.condemns(bias, bias.min_outcomes, expected)
                if not disable and guard.path_bias.condemns(bias, bias.min_outcomes):
                    self.spared += 1
            if disable and self._recently_disabled(wall_now) >= bias.max_disabled_per_window:
                # Guard after guard failing is the network's doing, or ours, not theirs (a
                # flood of hop-2 relays, our own link): drawing guard after guard would only
                # hand each draw its chance of being a spy. The counts stay; only warn.
                self.withheld += 1
                disable = False
            if disable:
                guard = replace(guard, disabled_at=wall_now)
                self.version += 1
            self._sampled[i] = guard
            return disable
        return False

    def _recently_disabled(self, wall_now: float) -> int:
        window = self.config.path_bias.disable_window_s
        return sum(
            1
            for g in self._sampled
            if g.disabled_at is not None and wall_now - g.disabled_at < window
        )

    def clock_stepped(self, by_s: float) -> None:
        """The wall clock was stepped by ``by_s``: the list's times were taken on the wrong
        clock, and move with it. A machine without a clock starts in 1970 with an empty
        directory; unmoved, its guards would count as unlisted for 56 years, or drawn then and
        long expired, on NTP's step."""
        if self._sampled:
            self._sampled = [
                replace(
                    g,
                    added_at=g.added_at + by_s,
                    expires_at=g.expires_at + by_s,
                    unlisted_since=None if g.unlisted_since is None else g.unlisted_since + by_s,
                    disabled_at=None if g.disabled_at is None else g.disabled_at + by_s,
                )
                for g in self._sampled
            ]
            self.version += 1

    def _usable(
        self,
        directory: RelayDirectory,
        origin: NodeId,
        origin_prefixes: frozenset[bytes],
        min_score: float,
        now: float,
        region: HopRegion | None,
    ) -> list[RelayInfo]:
        reachable = [
            relay
            for guard in self._sampled
            if guard.disabled_at is None
            and (relay := directory.get(guard.node_id)) is not None
            and self._unreachable_until.get(guard.node_id, -1.0) <= now
        ]
        candidates = hop_candidates(
            reachable,
            origin=origin,
            origin_prefixes=origin_prefixes,
            min_score=min_score,
            region=region,
        )
        return [relay for relay, _, _ in candidates]

    def _prune(self, directory: RelayDirectory, wall_now: float) -> None:
        kept: list[GuardRecord] = []
        changed = False
        longest = self.config.lifetime_s + self.config.lifetime_jitter_s
        for guard in self._sampled:
            # Times from a file, or stamped while the clock ran ahead, are bounded by today's.
            if guard.added_at > wall_now or guard.expires_at > wall_now + longest:
                guard, changed = (
                    replace(
                        guard,
                        added_at=min(guard.added_at, wall_now),
                        expires_at=min(guard.expires_at, wall_now + longest),
                    ),
                    True,
                )
            if guard.unlisted_since is not None and guard.unlisted_since > wall_now:
                guard, changed = replace(guard, unlisted_since=wall_now), True
            if guard.disabled_at is not None and guard.disabled_at > wall_now:
                guard, changed = replace(guard, disabled_at=wall_now), True
            listed = guard.node_id in directory
            if listed and guard.unlisted_since is not None:
                guard, changed = replace(guard, unlisted_since=None), True
            elif not listed and guard.unlisted_since is None:
                guard, changed = replace(guard, unlisted_since=wall_now), True
            gone = (
                guard.unlisted_since is not None
                and wall_now - guard.unlisted_since >= self.config.unlisted_grace_s
            )
            if guard.expires_at <= wall_now or gone:
                self._unreachable_until.pop(guard.node_id, None)
                changed = True
                continue
            kept.append(guard)
        if changed:
            self._sampled = kept
            self.version += 1

    def _sample(
        self,
        directory: RelayDirectory,
        origin: NodeId,
        origin_prefixes: frozenset[bytes],
        min_score: float,
        wall_now: float,
        region: HopRegion | None,
    ) -> RelayInfo | None:
        held = {g.node_id for g in self._sampled}
        prefixes = {relay.prefix for g in self._sampled if (relay := directory.get(g.node_id))}
        candidates = [r for r in directory if r.node_id not in held]
        try:
            (relay,) = select_path(
                candidates,
                self._rng,
                hops=1,
                origin=origin,
                origin_prefixes=origin_prefixes | prefixes,
                min_score=min_score,
                region=region,
            )
        except NoCircuitAvailable:
            return None
        lifetime = self.config.lifetime_s + self._rng.uniform(0.0, self.config.lifetime_jitter_s)
        self._sampled.append(GuardRecord(relay.node_id, wall_now, wall_now + lifetime))
        self.version += 1
        return relay
