"""Path bias's relay-side baseline: what a node's own relay says of the network's circuits."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from murmur.base.ids import NodeId
from murmur.overlay.circuits.path_bias import PathBiasConfig, PathBiasCounts, RelayedOutcomes


def _peer(i: int) -> NodeId:
    return NodeId(i.to_bytes(32, "big"))


def _fill(relayed: RelayedOutcomes, *, peers: int, each: int, ok_share: float) -> None:
    """``each`` outcomes from each of ``peers`` predecessors, ``ok_share`` of them ok."""
    good = round(each * ok_share)
    for p in range(peers):
        for i in range(each):
            relayed.add(_peer(p), ok=i < good)


def _wilson_low(ok: int, outcomes: int) -> float:
    """The lower end of a one-sided Wilson interval at the baseline's z, from scipy (as a
    two-sided interval of twice the confidence less one)."""
    confidence = 2.0 * NormalDist().cdf(PathBiasConfig().relayed_confidence_z) - 1.0
    interval = binomtest(ok, outcomes).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low)


def test_the_baseline_says_nothing_until_it_has_counted_enough() -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=9, each=1, ok_share=1.0)
    assert relayed.extension_success() is None
    assert relayed.expected_circuit_success() is None  # the fixed bar, on more outcomes
    relayed.add(_peer(99), ok=True)  # the tenth
    assert relayed.extension_success() == pytest.approx(_wilson_low(10, 10))  # 0.79, not 1


def test_the_share_read_is_the_lower_end_of_its_interval() -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=10, each=10, ok_share=0.9)  # weighing 40, 36 ok (0.9 counted)
    assert relayed.extension_success() == pytest.approx(_wilson_low(36, 40))  # 0.795
    assert relayed.expected_circuit_success() == pytest.approx(_wilson_low(36, 40) ** 2)
    healthy = RelayedOutcomes(PathBiasConfig())
    _fill(healthy, peers=100, each=4, ok_share=1.0)
    assert healthy.extension_success() == pytest.approx(_wilson_low(400, 400))  # 0.993
    # the more extensions counted at one share, the closer the bound comes to it
    more = RelayedOutcomes(PathBiasConfig())
    _fill(more, peers=100, each=10, ok_share=0.9)
    bound, closer = relayed.extension_success(), more.extension_success()
    assert bound is not None and closer is not None and bound < closer < 0.9


def test_a_failing_network_lowers_the_bar_as_two_extensions_would_fail() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_confidence_z=0.0))  # the share counted
    _fill(relayed, peers=10, each=10, ok_share=0.7)
    assert relayed.extension_success() == pytest.approx(0.7)
    expected = relayed.expected_circuit_success()
    assert expected == pytest.approx(0.49)
    # a guard passing 40 % of its circuits: under the fixed bar (0.5), above the lowered one
    config = relayed.config
    guard = PathBiasCounts(20.0, 8.0)
    assert guard.condemns(config, 20)
    assert expected is not None and not guard.condemns(config, 20, expected)


def test_the_bar_never_falls_below_the_floor() -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=10, each=10, ok_share=0.0)
    assert relayed.extension_success() == 0.0
    expected = relayed.expected_circuit_success()
    assert expected == pytest.approx(0.36)  # 0.6 squared
    selective = PathBiasCounts(20.0, 3.0)  # a spy guard passing what goes to fellow spies
    assert expected is not None and selective.condemns(relayed.config, 20, expected)


def test_one_predecessor_failing_on_purpose_weighs_no_more_than_its_cap() -> None:
    """The relays we extend to are chosen by whoever builds through us: one client building
    circuits that fail past us, to have its spy guard spared, counts as four outcomes."""
    relayed = RelayedOutcomes(PathBiasConfig())
    _fill(relayed, peers=9, each=10, ok_share=1.0)
    for _ in range(1_000):
        relayed.add(_peer(500), ok=False)
    assert relayed.extension_success() == pytest.approx(_wilson_low(36, 40))
    # alone, or with one more, it does not even make a baseline: that takes three predecessors
    few = RelayedOutcomes(PathBiasConfig())
    for peer in (500, 501):
        for _ in range(1_000):
            few.add(_peer(peer), ok=False)
    assert few.extension_success() is None
    for _ in range(2):
        few.add(_peer(502), ok=False)
    assert few.extension_success() == 0.0  # 4 + 4 + 2 outcomes
    assert few.expected_circuit_success() == pytest.approx(0.36)  # the floor


def test_the_least_recently_seen_predecessors_are_forgotten() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_max_peers=4, relayed_min_outcomes=1))
    for p in range(4):
        relayed.add(_peer(p), ok=False)
    relayed.add(_peer(0), ok=True)  # seen again: now the most recent
    relayed.add(_peer(9), ok=True)  # forgets peer 1
    assert list(relayed._by_peer) == [_peer(2), _peer(3), _peer(0), _peer(9)]
    assert relayed.extension_success() == pytest.approx(_wilson_low(2, 5))
    relayed.revoke(_peer(2))  # a collapse counts as seen too
    assert list(relayed._by_peer) == [_peer(3), _peer(0), _peer(9), _peer(2)]


def test_without_the_baseline_the_bar_stays_fixed() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_baseline=False))
    _fill(relayed, peers=10, each=10, ok_share=0.2)
    assert relayed.expected_circuit_success() == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"relayed_min_outcomes": 0},
        {"relayed_confidence_z": -1.0},
        {"relayed_confidence_z": math.nan},
        {"relayed_confidence_z": math.inf},
        {"relayed_max_peers": 0},
        {"relayed_floor": 0.0},
        {"relayed_floor": 1.5},
        {"relayed_cap_per_peer": 0.5},
    ],
)
def test_baseline_settings_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PathBiasConfig(**bad)  # type: ignore[arg-type]


def test_a_collapse_takes_one_ok_back_and_never_goes_below_none() -> None:
    relayed = RelayedOutcomes(PathBiasConfig(relayed_min_outcomes=1, relayed_confidence_z=0.0))
    relayed.revoke(_peer(1))  # nothing counted for it: nothing to take back
    assert relayed.extension_success() is None
    relayed.add(_peer(1), ok=True)
    relayed.add(_peer(1), ok=True)
    relayed.revoke(_peer(1))
    assert relayed.extension_success() == 0.5
    assert PathBiasCounts(2.0, 0.0).revoke() == PathBiasCounts(2.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 600), st.sampled_from(["ok", "failed", "collapsed"]))))
def test_any_history_keeps_the_baseline_bounded(history: list[tuple[int, str]]) -> None:
    relayed = RelayedOutcomes(PathBiasConfig())
    for peer, outcome in history:
        if outcome == "collapsed":
            relayed.revoke(_peer(peer))
        else:
            relayed.add(_peer(peer), ok=outcome == "ok")
    assert len(relayed._by_peer) <= relayed.config.relayed_max_peers
    success, circuits = relayed.extension_success(), relayed.expected_circuit_success()
    assert (success is None) == (circuits is None)
    assert success is None or 0.0 <= success <= 1.0
    assert circuits is None or 0.36 - 1e-12 <= circuits <= 1.0
    one_hop = relayed.expected_circuit_success(extensions=1)
    assert one_hop is None or 0.6 - 1e-12 <= one_hop <= 1.0
