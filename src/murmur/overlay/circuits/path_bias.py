"""Path-bias accounting: dropping an entry guard that lets only some circuits through.

Theory of operation (Tor's path-bias detection, proposal 209, reduced). A spy that is a node's
entry guard sees hop 2 of every circuit that node builds, since hop 2 is its own successor.
By refusing the extensions to honest relays, and letting through those to its fellow spies, it
makes every circuit the node keeps one with spies at hop 1 and hop 2, which names the origin
of everything the circuit carries (docs/evaluation.md §6, "Path bias"). Without guards such a
spy holds hop 1 only for the one circuit; with a guard it holds it for weeks, so guards make
this *selective denial* pay, and the defence belongs with them: count, per guard, the circuits
that got past hop 1 and how they ended, and stop using a guard whose circuits end badly far more
often than circuits do.

Two kinds of outcome are counted, each on its own. **Circuits**: a circuit's outcome is
counted once, when it ends, and only once hop 1 has answered (before that the failure is hop
1's reachability, which :class:`EntryGuards` handles on its own):

* **ok**: it was built and we closed it (rotation), so no hop ever stopped it;
* **failed**: it failed after hop 1 answered, during the build (an extension refused,
  truncated, timed out, the circuit destroyed) or after it (destroyed, hop 1's link lost while
  our others stay up). Failures that are ours or the directory's do not count: a race loser we
  closed, a hop whose announced onion key would not parse, a link lost while our network is down.

**Messages** (Tor's use bias): a spy guard can let every circuit be built and drop the cells
of those whose hop 2 is honest instead; the origin watches gossip for each transaction it sent
(the exit publishes it, so it comes back): one outcome per message, for the guard of the
circuit that carried it last, ok if it came back before its last resend timed out.

Honest circuits end well almost always (simulated, no churn: 80 of 47,368 failed after hop 1,
0.17 %; a real network with churn fails more, Tor's guidance is above 70 % success), and a
selective guard among a fraction p of spies passes about p of them. A guard is disabled when,
after ``min_outcomes`` circuits or ``min_messages`` messages, fewer than ``disable_below`` of
them were ok; the counts halve at ``scale_at`` so recent behaviour weighs most. A disabled
guard stays on the list until its lifetime ends (so it is not drawn again meanwhile) and the
next guard on the list takes its place. At most two guards are disabled a day: more failing
one after the other points at the network or at the node itself (an adversary flooding hop-2
relays everywhere, or one that exhausts a guard's buffers from outside), and each new guard
would be one more chance of a spy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PathBiasConfig:
    """When a guard's outcomes condemn it (see the module's docstring for why these)."""

    min_outcomes: int = 20
    """Circuit outcomes counted before a guard can be judged (about an hour of a default
    pool; circuits also fail for reasons no one chose, now and then)."""
    min_messages: int = 8
    """Message outcomes counted before a guard can be judged. Fewer: a node sends few
    transactions of its own, each lost one is a transaction a spy did not get to name only
    by luck (about three in four, at a selective guard, are lost; the rest are named), and
    honest paths lose none that could come back (what cannot is not counted). Measured:
    with twenty, a heavy sender behind a dropping spy guard lost as many transactions, and
    had as many named, as with no path bias at all (docs/evaluation.md §6, "Path bias")."""
    disable_below: float = 0.5
    """A guard whose share of ok outcomes falls below this is disabled (0: never). Half is
    far below what honest guards see even when spies refuse every extension they are asked
    for as hop 2 (about 1 - p), and far above a selective guard's (about p)."""
    scale_at: int = 100
    """When this many outcomes are counted, both counts halve."""
    max_disabled_per_window: int = 2
    """At most this many guards are disabled within ``disable_window_s``; a third condemned
    meanwhile is only counted (``EntryGuards.withheld``): guard after guard failing points at
    the network or at us, and every new guard is another chance of drawing a spy."""
    disable_window_s: float = 86_400.0

    def __post_init__(self) -> None:
        least, most = min(self.min_outcomes, self.min_messages), max(
            self.min_outcomes, self.min_messages
        )
        if least < 1 or self.scale_at < 2 * most:
            raise ValueError("path bias needs minimums >= 1 and scale_at >= 2 x either minimum")
        if not 0.0 <= self.disable_below <= 1.0:
            raise ValueError("path bias disable_below must lie in [0, 1]")
        if self.max_disabled_per_window < 1 or self.disable_window_s <= 0:
            raise ValueError("path bias needs max_disabled_per_window >= 1 and a positive window")


@dataclass(frozen=True, slots=True)
class PathBiasCounts:
    """One guard's outcomes (of circuits, or of messages) since it was sampled (scaled; kept
    across restarts)."""

    outcomes: float = 0.0
    ok: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ok <= self.outcomes:
            raise ValueError("path bias counts must satisfy 0 <= ok <= outcomes")

    def add(self, ok: bool, config: PathBiasConfig) -> PathBiasCounts:
        """These counts with one more outcome, halved when they reach ``scale_at``."""
        outcomes, good = self.outcomes + 1.0, self.ok + (1.0 if ok else 0.0)
        if outcomes >= config.scale_at:
            outcomes, good = outcomes / 2.0, good / 2.0
        return PathBiasCounts(outcomes, good)

    def condemns(self, config: PathBiasConfig, minimum: int) -> bool:
        """Whether these outcomes (at least ``minimum`` of them) show a guard that lets only
        some circuits through."""
        judged = self.outcomes >= minimum
        return judged and self.ok < config.disable_below * self.outcomes
