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

Two kinds of outcome are counted, each on its own. **Circuits**: one outcome per circuit that
got past hop 1 (before that a failure is hop 1's reachability, which :class:`EntryGuards`
handles on its own), decided as soon as it is known, as Tor's path bias does:

* **ok** when it is built;
* **failed** when it fails before that: an extension refused, truncated or timed out, the
  circuit destroyed;
* a built circuit destroyed past hop 1 later (it *collapsed*) takes its ok back: it counts
  as failed after all.

Waiting for a circuit's end to call it ok (its rotation, minutes later) would count failures
at once and successes late, so while failures are frequent the first outcomes would be nearly
all failures and an honest guard would look far worse than it is. Failures that are ours or
the directory's do not count: a race loser we closed, a hop whose announced onion key would
not parse, a lost link to hop 1 (our own network going down loses it as often, and losing it
takes down every circuit through the guard alike).

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

**The network's own share** (the relay-side baseline). The bar is "far more often than circuits
do", and circuits fail more when the network is in trouble: relays overloaded, or an adversary
exhausting them everywhere. Then honest guards fall under a fixed bar too, and each one
disabled hands its node a new draw, another chance of a spy. Every node is a relay, so it sees
the network's failure rate from the inside: of the extensions it performs for others, how many
were answered and how many of those circuits were later destroyed from beyond it
(:class:`RelayedOutcomes`). A circuit past an honest guard needs two such extensions (the
guard's, then hop 2's), so the bar becomes ``disable_below × s²`` for the relay's success share
``s``, read as the lower end of a 95 % interval over the extensions counted (a few that went
well do not pass for a healthy network). Before the relay has counted ``relayed_min_outcomes``,
the baseline says nothing, and a guard is judged on the fixed bar but only after twice the
usual outcomes (``min_outcomes_unknown_network``): the wait gives the relay time to count, and a
node whose relay never extends still judges, later, without assuming anything of the network.
The baseline only lowers the bar, and not below ``relayed_floor²`` of it: the relays a node
extends to are chosen by whoever builds through it, so an adversary can make some of its
extensions fail on purpose, to have its spy guard spared. Each predecessor's outcomes weigh at
most ``relayed_cap_per_peer`` (one client building failing circuits through us moves little; a
baseline takes three predecessors at least), and at the floor a guard passing fewer than
``disable_below × relayed_floor²`` of its circuits (0.18 by default) is still condemned, while a
selective spy guard passes about p: under the floor's bar while p < 0.18; with more of the
relays, an adversary that also fails enough extensions through the node's relay, from three
identities or more, could have its selective guard spared.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from murmur.base.bounded import remember
from murmur.base.ids import NodeId


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
    relayed_baseline: bool = True
    """Lower the bar when the node's own relay sees circuits fail too (False: a fixed bar)."""
    relayed_min_outcomes: int = 10
    """Outcomes of relayed extensions counted before the baseline says anything."""
    min_outcomes_unknown_network: int = 40
    """Circuit outcomes counted before a guard can be judged while the baseline says nothing
    yet; then the fixed bar applies. Waiting lets the node's relay count, where judging at once
    on the fixed bar condemned honest guards in a failing network (docs/evaluation.md §6);
    a node whose relay never extends (unreachable, or seldom chosen) still judges, later, and
    on Tor's fixed bar, never on the floor's: a node that knows nothing of the network must
    not assume the worst of it, or a spy guard passing more than ``disable_below ×
    relayed_floor²`` of its circuits would be spared there for nothing."""
    relayed_confidence_z: float = 1.645
    """How sure the baseline must be of the share it reports: it reports the lower end of a
    one-sided interval (Wilson's score interval; 1.645: 95 %), so a share read from a few
    extensions that went well does not pass for a healthy network."""
    relayed_floor: float = 0.6
    """The lowest per-extension success share the baseline reports: at most it lowers the bar
    to ``relayed_floor²`` of itself (0.36; 0.18 of circuits at the default ``disable_below``)."""
    relayed_cap_per_peer: float = 4.0
    """Outcomes one predecessor's circuits weigh at most in the baseline."""
    relayed_max_peers: int = 256
    """Predecessors whose outcomes are kept (the least recently seen are forgotten)."""

    def __post_init__(self) -> None:
        minimums = (self.min_outcomes, self.min_messages, self.min_outcomes_unknown_network)
        if min(minimums) < 1 or self.scale_at < 2 * max(minimums):
            raise ValueError("path bias needs minimums >= 1 and scale_at >= 2 x each minimum")
        if self.min_outcomes_unknown_network < self.min_outcomes:
            raise ValueError("path bias needs min_outcomes_unknown_network >= min_outcomes")
        if not 0.0 <= self.disable_below <= 1.0:
            raise ValueError("path bias disable_below must lie in [0, 1]")
        if self.max_disabled_per_window < 1 or self.disable_window_s <= 0:
            raise ValueError("path bias needs max_disabled_per_window >= 1 and a positive window")
        if self.relayed_min_outcomes < 1 or self.relayed_max_peers < 1:
            raise ValueError("path bias needs relayed_min_outcomes and relayed_max_peers >= 1")
        if not 0.0 <= self.relayed_confidence_z < math.inf:
            raise ValueError("path bias needs a finite relayed_confidence_z >= 0")
        if not 0.0 < self.relayed_floor <= 1.0 or self.relayed_cap_per_peer < 1.0:
            raise ValueError("path bias needs relayed_floor in (0, 1] and a cap per peer >= 1")


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

    def revoke(self) -> PathBiasCounts:
        """These counts with one ok outcome turned into a failure (a built circuit that
        collapsed later)."""
        return PathBiasCounts(self.outcomes, max(0.0, self.ok - 1.0))

    def condemns(self, config: PathBiasConfig, minimum: int, expected: float = 1.0) -> bool:
        """Whether these outcomes (at least ``minimum`` of them) show a guard that lets only
        some circuits through, when an honest one would let ``expected`` of them through
        (:meth:`RelayedOutcomes.expected_circuit_success`)."""
        judged = self.outcomes >= minimum
        return judged and self.ok < config.disable_below * expected * self.outcomes


class RelayedOutcomes:
    """How the extensions this node performs as a relay fare: the network's own failure
    rate, seen from the inside (see the module's docstring). An outcome per extension, decided
    as a client decides its circuits': ok when the next relay answered; failed when it could
    not be reached, refused or did not answer; an ok taken back when the next relay destroys
    the circuit (or loses its link to us) later. Refusals that are ours (our own rate limits,
    a loop) are not counted: a client sees those as its guard's fault, rightly."""

    def __init__(self, config: PathBiasConfig) -> None:
        self.config = config
        self._by_peer: OrderedDict[NodeId, PathBiasCounts] = OrderedDict()

    def add(self, predecessor: NodeId, *, ok: bool) -> None:
        counts = self._by_peer.get(predecessor) or PathBiasCounts()
        config = self.config
        remember(self._by_peer, predecessor, counts.add(ok, config), config.relayed_max_peers)

    def revoke(self, predecessor: NodeId) -> None:
        """An extension counted ok collapsed: the next relay destroyed the circuit later. The
        predecessor counts as seen most recently, as in :meth:`add`."""
        counts = self._by_peer.get(predecessor)
        if counts is not None:
            remember(self._by_peer, predecessor, counts.revoke(), self.config.relayed_max_peers)

    def extension_success(self) -> float | None:
        """The share of extensions that go well, as far as the outcomes counted show it: the
        lower end of Wilson's score interval at ``relayed_confidence_z`` over the outcomes,
        each predecessor weighing at most ``relayed_cap_per_peer`` of them; None before
        ``relayed_min_outcomes`` are counted.

        A lower bound, not the share counted: the bar is lowered by what the baseline reads,
        so reading it high from a few extensions that went well would judge an honest guard
        against a healthy network's bar while the network fails its circuits (half the false
        alarms session 22 left were of that kind; docs/evaluation.md §6). Reading it low
        costs little: the floor bounds it."""
        cap, z2 = self.config.relayed_cap_per_peer, self.config.relayed_confidence_z**2
        n = ok = 0.0
        for counts in self._by_peer.values():
            weight = min(1.0, cap / counts.outcomes)
            n += weight * counts.outcomes
            ok += weight * counts.ok
        if n < self.config.relayed_min_outcomes:
            return None
        share = ok / n
        centre = share + z2 / (2.0 * n)
        margin = math.sqrt(z2 * (share * (1.0 - share) / n + z2 / (4.0 * n * n)))
        return min(1.0, max(0.0, (centre - margin) / (1.0 + z2 / n)))

    def expected_circuit_success(self, extensions: int = 2) -> float | None:
        """The share of circuits an honest guard lets through now: ``extensions`` past it (two
        on a 3-hop circuit), each at the relayed success share (not below ``relayed_floor``);
        1 without the baseline (the fixed bar); None while the baseline says nothing yet
        (:attr:`PathBiasConfig.min_outcomes_unknown_network`)."""
        if not self.config.relayed_baseline:
            return 1.0
        success = self.extension_success()
        if success is None:
            return None
        return max(success, self.config.relayed_floor) ** extensions
